"""gunicorn's settings, the one copy: `marketplace serve` loads them, and so does every deployment
(`gunicorn -c python:marketplace.gunicorn_conf marketplace.wsgi:app`, deploy/README.md).

They live in the package, not beside the container files, so an installed `marketplace serve`
finds them. The environment overrides the sizes (`BIND`, `WEB_CONCURRENCY`, `GUNICORN_THREADS`);
the command line overrides everything (`serve --bind/--workers/--threads` pass flags).
"""

from __future__ import annotations

import os
from typing import Any

# One process per two cores, 8 threads each: threads keep the cores busy while requests wait
# on PostgreSQL, and fewer processes mean fewer statements contending in PostgreSQL at once.
# On the 2-core bench machine, 1 x 8 took ~20% less server CPU per lease+submit than 2 x 4 at
# the same rate, and 2 x 4 ~40% more cycles/s than 2 sync workers (README, Performance).
# Threads must not exceed the engine's pool (`db.make_engine`: 10), or connections churn.
PROCESSES = max(1, (os.cpu_count() or 2) // 2)
THREADS = 8
# Idle keep-alive connections stay open this long. Longer than what clients and the proxies
# in front wait before reusing one (nginx `keepalive_timeout` 60 s upstream, cloud load
# balancers 60 s): otherwise gunicorn closes a connection the other side is about to reuse
# and that request fails with a reset (gunicorn's default 2 s reset ~0.2% of requests of a
# client pausing 2 s between lease and submit). gthread parks idle connections in its
# poller, so they hold no thread.
KEEPALIVE_SECONDS = 75

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", PROCESSES))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", THREADS))
keepalive = KEEPALIVE_SECONDS
timeout = 30  # a submit that arrived in time is processed well within the 60 s expiry grace
graceful_timeout = 30
max_requests = 20000  # recycle processes now and then (a leak stays bounded)
max_requests_jitter = 2000
# No access log of gunicorn's: the app writes one JSON line per request itself (method, path,
# route, status, milliseconds, request id: `marketplace.observe`), properly escaped, on any
# server; `MARKETPLACE_ACCESS_LOG=false` (`serve --no-access-log`) turns it off.
accesslog = None
errorlog = "-"
logger_class = "marketplace.logs.GunicornLogger"  # its own lines as JSON too


def child_exit(_server: Any, worker: Any) -> None:
    """A dead process's live gauges leave the multiprocess metrics (`marketplace.metrics`)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
