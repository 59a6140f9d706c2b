"""The marketplace web app: `create_app()` builds it; nothing global but extension objects.

Flask is imported inside the factory, so that `marketplace.client` (httpx only) can be
imported where the server's dependencies are not wanted.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from flask import Flask

    from marketplace import api, db, errors, queue, worker_page
    from marketplace.api.hot import HotPath
    from marketplace.config import load

    app = Flask(__name__)
    app.config.from_mapping(load())
    app.config.from_prefixed_env("MARKETPLACE")
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = load()["DATABASE_URL"]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db.init_app(app)
    queue.init_app(app)
    api.init_app(app)
    errors.register(app)  # after flask-smorest's, whose HTTP handler drops e.g. `Allow`
    worker_page.init_app(app)  # /worker/: the worker page (static files)
    app.wsgi_app = HotPath(app, app.wsgi_app)  # type: ignore[method-assign]  # lease/submit the short way

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
