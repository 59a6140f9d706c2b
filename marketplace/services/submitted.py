"""What follows a stored submit, whichever way it came in (the Flask view or the hot path).

A qualification test is graded at once (the worker waits for the outcome; tests are rare). The
rest is queued in RQ: aggregation in batches, when an answer id crosses a multiple of the batch
size or when the job finishes; the rules check of the job once the answers since the last one
reach a share of the job's (`RULES_CHECK_SHARE`, `queue.count_toward_rules`), deduplicated while
one is waiting (`queue.enqueue_once`), so a spammer stops soon (it checks the workers with new
answers and those who answered the same real items: `rules.workers_with_new_evidence`). Every
submit makes the same Redis calls, whether or not its task held golden items: a submit that held
one must not take longer than one that did not (its timing would tell golden items apart).
"""

from __future__ import annotations

from dataclasses import replace

from redis import Redis
from sqlalchemy import Engine
from sqlmodel import Session

from marketplace import queue
from marketplace.models import utcnow
from marketplace.pool.submit import SubmitResult
from marketplace.services import qualification


def follow_up(
    engine: Engine, redis: Redis, queue_name: str, aggregate_every: int, result: SubmitResult, worker_id: int
) -> SubmitResult:
    """Grade a test, queue aggregation and the rules; the result to answer with."""
    if result.is_test:
        result = _graded(engine, result, worker_id)
    if result.job_finished or any(i % aggregate_every == 0 for i in result.answer_ids):
        queue.enqueue_once(redis, queue_name, queue.AGGREGATE_JOB, result.job_id)
    if not result.replayed and queue.count_toward_rules(redis, result.job_id, len(result.answer_ids)):
        queue.enqueue_once(redis, queue_name, queue.RULES_JOB, result.job_id)
    return result


def _graded(engine: Engine, result: SubmitResult, worker_id: int) -> SubmitResult:
    """A submitted (or replayed) test with its outcome, graded in a transaction of its own once
    the answers are stored (a stop in between leaves it pending, and the worker's next lease of
    the job grades it)."""
    with Session(engine, expire_on_commit=False) as session:
        outcome = qualification.grade(session, result.job_id, worker_id, result.id, utcnow())
        session.commit()
    return replace(result, qualification=outcome)
