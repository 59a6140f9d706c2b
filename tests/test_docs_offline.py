"""`/docs` works without internet: Swagger UI comes from the installed package."""

from __future__ import annotations

import re

from flask import Flask


def test_docs_page_loads_swagger_ui_from_this_server_only(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and not [a for a in assets if "//" in a]  # nothing from another host
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.data) > 1000
    assert client.get("/docs/assets/../../etc/passwd").status_code == 404
