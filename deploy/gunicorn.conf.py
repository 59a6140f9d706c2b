"""gunicorn settings for production: `gunicorn -c deploy/gunicorn.conf.py marketplace.wsgi:app`."""

import multiprocessing
import os

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# Threads keep the cores busy while a request waits on PostgreSQL's commit, and keep-alive
# spares a connection per request: same CPU per lease+submit, ~40% more of them per second
# than sync workers (README, Performance).
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = 30  # a submit that arrived in time is processed well within the 60 s expiry grace
keepalive = 5
max_requests = 20000
max_requests_jitter = 2000
accesslog = "-"
errorlog = "-"
