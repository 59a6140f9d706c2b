"""gunicorn settings for production: `gunicorn -c deploy/gunicorn.conf.py marketplace.wsgi:app`."""

import multiprocessing
import os

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "sync"
timeout = 30  # a submit that arrived in time is processed well within the 60 s expiry grace
keepalive = 5
max_requests = 20000
max_requests_jitter = 2000
accesslog = "-"
errorlog = "-"
