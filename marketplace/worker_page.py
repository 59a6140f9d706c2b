"""The worker page at `/worker/`: static HTML, CSS and JavaScript modules served by the app
itself (no build step, no CDN), calling the same public API as every other client.

The page keeps the worker's key in `sessionStorage` and sends it as a bearer header, so these
responses carry no secret; the headers keep the page from being framed, from leaking its
address, and from running any script but its own.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, redirect, send_from_directory

PAGE_FOLDER = Path(__file__).parent / "static" / "worker"
# Images come from wherever the requester's `data.image_url` points: any host.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src * data: blob:; "
    "style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)

blp = Blueprint("worker_page", __name__)


@blp.get("/worker")
def bare() -> Response:
    return redirect("/worker/", code=308)  # type: ignore[return-value]


@blp.get("/worker/")
def index() -> Response:
    return send_from_directory(PAGE_FOLDER, "index.html", max_age=0)


@blp.get("/worker/<path:name>")
def asset(name: str) -> Response:
    return send_from_directory(PAGE_FOLDER, name, max_age=0)


@blp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(blp)
