"""`marketplace worker`: an RQ worker with its scheduler, plus the heartbeat that enqueues the
periodic sweep (`workers/schedule.py`). It outlives Redis outages: RQ's worker stops when it
loses Redis at some points of its loop (recording a finished job, say), either raising or
returning as if done; unless it was asked to stop (SIGTERM, SIGINT) or works a burst, a new one
is started once Redis answers."""

from __future__ import annotations

import logging
import time

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker, Worker

from marketplace import create_app, queue
from workers.schedule import Heartbeat, arm_quietly

log = logging.getLogger(__name__)
# RQ's scheduler (delayed retries, `enqueue_in`) runs in one worker at a time, under a lock that
# outlives a killed holder by 61 s; the others try to take it over at their maintenance, every
# 10 minutes by default, and an idle worker looks only between two waits on the queue (worker
# TTL - 15 s, 405 s by default). With these, another worker takes over within about 61 + 45 s.
MAINTENANCE_SECONDS = 30
WORKER_TTL_SECONDS = 60
REDIS_RETRY_SECONDS = 1.0


class _Stoppable:
    """Remembers a stop request (RQ's warm shutdown) apart from a stop on a lost Redis."""

    stop_asked = False

    def request_stop(self, signum: int, frame: object) -> None:
        self.stop_asked = True
        super().request_stop(signum, frame)  # type: ignore[misc]


class MarketplaceWorker(_Stoppable, Worker):
    pass


class MarketplaceSimpleWorker(_Stoppable, SimpleWorker):
    pass


def run(burst: bool = False, fork: bool = True) -> None:
    """Work the queue. `fork`: each job in a child process of its own (RQ's default: a job
    that crashes or leaks leaves the worker as it was); without, in this process (RQ's
    SimpleWorker: no fork and no new app per job, ~0.3 s saved on each short job, what
    `marketplace demo` wants for its many rule checks). `burst`: work what is queued (a sweep
    included) and stop."""
    app = create_app()
    redis = queue.get_redis(app)
    arm_quietly(app)  # on start (a burst works this sweep too)
    heartbeat = Heartbeat(app)
    heartbeat.start()
    kind = MarketplaceWorker if fork else MarketplaceSimpleWorker
    try:
        while True:
            worker = kind(
                [queue.get_queue(redis, app.config["QUEUE_NAME"])],
                connection=redis,
                maintenance_interval=MAINTENANCE_SECONDS,
                worker_ttl=WORKER_TTL_SECONDS,
            )
            try:
                worker.work(with_scheduler=True, burst=burst)
                lost = "its loop ended"
            except RedisError as error:
                if burst:
                    raise
                lost = type(error).__name__
            if burst or worker.stop_asked:
                return
            log.warning("RQ's worker stopped (%s): a new one once Redis answers", lost)
            _wait_for_redis(redis)
    finally:
        heartbeat.stop()


def _wait_for_redis(redis: Redis) -> None:
    while True:
        time.sleep(REDIS_RETRY_SECONDS)
        try:
            if redis.ping():
                return
        except RedisError:
            continue
