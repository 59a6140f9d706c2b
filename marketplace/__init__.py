"""The marketplace web app: `create_app()` builds it; nothing global but extension objects.

Flask is imported inside the factory, so that `marketplace.client` (httpx only) can be
imported where the server's dependencies are not wanted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from marketplace import api, db, docs_assets, errors, limits, logs, metrics, observe, probes, queue, worker_page
    from marketplace.api.hot import HotPath
    from marketplace.config import database_url, load

    app = Flask(__name__)
    app.config.from_mapping(load())
    app.config.from_prefixed_env("MARKETPLACE")
    if test_config:
        app.config.from_mapping(test_config)
    app.config["DATABASE_URL"] = database_url(app.config)  # the embedded server's when unset
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logs.configure(app.config["LOG_LEVEL"])
    db.init_app(app)
    queue.init_app(app)
    api.init_app(app)
    errors.register(app)  # after flask-smorest's, whose HTTP handler drops e.g. `Allow`
    probes.init_app(app)
    docs_assets.init_app(app)
    metrics.init_app(app)
    observe.init_app(app)
    worker_page.init_app(app)  # /worker/: the worker page (static files)
    app.wsgi_app = HotPath(app, app.wsgi_app)  # type: ignore[method-assign]  # lease/submit the short way
    app.wsgi_app = limits.RateLimits(app, app.wsgi_app)  # type: ignore[method-assign]  # the hot path's too
    app.wsgi_app = observe.Observe(app, app.wsgi_app)  # type: ignore[method-assign]  # ids, metrics, logs
    hops = int(app.config["TRUSTED_PROXIES"])
    if hops:  # the client's address and scheme as the proxies saw them
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app
