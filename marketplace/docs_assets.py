"""Swagger UI served from the `swagger-ui-bundle` package, so `/docs` works on a machine
without internet (the page used to load it from a CDN and was blank offline)."""

from __future__ import annotations

from flask import Flask, send_from_directory
from flask.typing import ResponseReturnValue
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/docs/assets/"


def init_app(app: Flask) -> None:
    @app.get(ASSETS_URL + "<path:filename>")
    def swagger_ui_asset(filename: str) -> ResponseReturnValue:
        return send_from_directory(swagger_ui_path, filename, max_age=86400)
