"""`marketplace worker`: an RQ worker with its scheduler, plus the periodic sweep."""

from __future__ import annotations

from rq import Worker

from marketplace import create_app, queue
from workers.jobs import schedule_sweep


def run(burst: bool = False) -> None:
    app = create_app()
    redis = queue.get_redis(app)
    schedule_sweep(app)
    worker = Worker([queue.get_queue(redis, app.config["QUEUE_NAME"])], connection=redis)
    worker.work(with_scheduler=True, burst=burst)
