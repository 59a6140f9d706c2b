"""Periodic work that no fault stops: a heartbeat thread in every worker process enqueues the
sweep every `SWEEP_SECONDS`.

The sweep used to schedule its own next run at the end of each run (`enqueue_in`, RQ's
scheduler): a run that failed (a 12 s PostgreSQL outage) ended the chain, a Redis restart
erased the schedule, and a dead worker holding RQ's scheduler lock held up the scheduled run
for 10 minutes; each time until a worker restarted. Now the schedule lives in the processes
that run the work, not in Redis: the heartbeat arms the sweep at start and at every tick,
whether or not the previous run finished, failed or was lost, and enqueues it directly (RQ's
scheduler is not involved). A Redis that is down makes a tick log and wait for the next.

Several worker processes share one sweep per interval: a tick enqueues only when it sets the
key `marketplace:sweep:armed` (`SET NX` with the interval as TTL), and not while a sweep is
already waiting (`queue.enqueue_once`).
"""

from __future__ import annotations

import logging
import threading

from flask import Flask
from redis.exceptions import RedisError

from marketplace import queue

log = logging.getLogger(__name__)
ARMED_KEY = "marketplace:sweep:armed"


def interval(app: Flask) -> float:
    return float(app.config["SWEEP_SECONDS"])


def arm_sweep(app: Flask) -> bool:
    """Enqueue a sweep unless one was enqueued within the interval (by any process) or one is
    waiting; True when this call enqueued it."""
    redis = queue.get_redis(app)
    every = interval(app)
    if not redis.set(ARMED_KEY, "1", nx=True, px=max(1, int(every * 1000))):
        return False
    waiting_at_most = max(60, int(every * 6))  # a sweep stuck behind long jobs: enqueue another then
    return queue.enqueue_once(redis, app.config["QUEUE_NAME"], queue.SWEEP_JOB, ttl=waiting_at_most)


def arm_quietly(app: Flask) -> None:
    """`arm_sweep`, logging instead of raising: the schedule must outlive any store's outage."""
    try:
        arm_sweep(app)
    except RedisError as error:  # down or restarting: the next tick tries again
        log.warning("sweep not armed: %s", type(error).__name__)
    except Exception:
        log.exception("sweep not armed")


class Heartbeat(threading.Thread):
    """Arms the sweep every interval until `stop()` (a daemon thread: it ends with its process;
    the worker arms once itself at start)."""

    def __init__(self, app: Flask) -> None:
        super().__init__(name="marketplace-heartbeat", daemon=True)
        self.app = app
        self._stopped = threading.Event()

    def run(self) -> None:
        every = interval(self.app)
        while not self._stopped.wait(every):
            arm_quietly(self.app)

    def stop(self) -> None:
        self._stopped.set()
