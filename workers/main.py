"""`marketplace worker`: an RQ worker with its scheduler, plus the periodic sweep."""

from __future__ import annotations

from rq import SimpleWorker, Worker

from marketplace import create_app, queue
from workers.jobs import schedule_sweep


def run(burst: bool = False, fork: bool = True) -> None:
    """Work the queue. `fork`: each job in a child process of its own (RQ's default: a job
    that crashes or leaks leaves the worker as it was); without, in this process (RQ's
    SimpleWorker: no fork and no new app per job, ~0.3 s saved on each short job, what
    `marketplace demo` wants for its many rule checks)."""
    app = create_app()
    redis = queue.get_redis(app)
    schedule_sweep(app)
    kind = Worker if fork else SimpleWorker
    worker = kind([queue.get_queue(redis, app.config["QUEUE_NAME"])], connection=redis)
    worker.work(with_scheduler=True, burst=burst)
