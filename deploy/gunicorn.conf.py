"""gunicorn settings for production: `gunicorn -c deploy/gunicorn.conf.py marketplace.wsgi:app`."""

import multiprocessing
import os

bind = os.environ.get("BIND", "0.0.0.0:8000")
# As `marketplace serve` (see SERVE_PROCESSES in marketplace/cli.py for the measurements):
# one process per two cores with 8 threads; threads at most the engine's pool size (10).
workers = int(os.environ.get("WEB_CONCURRENCY", max(1, multiprocessing.cpu_count() // 2)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 8))
timeout = 30  # a submit that arrived in time is processed well within the 60 s expiry grace
keepalive = 5
max_requests = 20000
max_requests_jitter = 2000
accesslog = "-"
errorlog = "-"
