"""Background jobs. Each takes ids, opens what it needs, and is safe to run twice."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from flask import Flask
from sqlalchemy import Engine, select, text

from marketplace import create_app, queue
from marketplace.db import get_engine, session_scope
from marketplace.models import Job, JobState, PayoutRun, utcnow
from marketplace.pool.release import reclaim_expired
from marketplace.pool.slots import finish_if_done
from marketplace.services import acceptance, aggregating, payouts, rules, webhooks

log = logging.getLogger(__name__)
HOT_TABLES = ("slot", "assignment", "assignmentitem", "answer", "item")
_apps: dict[int, Flask] = {}


def _app() -> Flask:
    """One app per process (RQ forks a work horse per job; engines must not cross a fork)."""
    pid = os.getpid()
    if pid not in _apps:
        _apps.clear()
        _apps[pid] = create_app()
    return _apps[pid]


def aggregate_job(job_id: int) -> dict[str, Any]:
    """Recompute a job's aggregates; answers that arrive meanwhile trigger the next run."""
    app = _app()
    redis = queue.get_redis(app)
    redis.delete(queue.guard_key(queue.AGGREGATE_JOB, job_id))
    with session_scope(get_engine(app)) as session:
        summary = aggregating.aggregate_job(session, job_id, aggregating.Pace.from_config(app.config))
    if summary.get("waiting"):  # nothing new for the rules or the decisions either
        return summary
    summary["rules_fired"] = _apply_rules(app, job_id, None)
    with session_scope(get_engine(app)) as session:  # after the rules: a ban for cause rejects
        summary["decisions"] = acceptance.decide_job(session, job_id, acceptance.Limits.from_config(app.config))
    summary["webhooks"] = _tell_webhooks(app, job_id=job_id)
    log.info("aggregated %s", summary)
    return summary


def hold(key: str, seconds: float) -> bool:
    """Keep this worker busy until `key` appears in Redis (at most `seconds`; True if it did).

    The demo's round barrier (`marketplace/demo.py`): with its one RQ worker held while a
    round's answers arrive, the rules checks and aggregations those submits queue run after
    the round, against all of its answers, instead of whenever the machine's speed lets one
    start mid-round (a ban would then depend on which answers it happened to see)."""
    redis = queue.get_redis(_app())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if redis.delete(key):
            return True
        time.sleep(0.005)
    return False


def apply_rules_job(job_id: int) -> list[dict[str, Any]]:
    """Rules for the workers with new evidence since the last check (queued by the submits once
    their answers reach `RULES_CHECK_SHARE` of the job's, see `services/submitted.py`, and by
    the sweep for any left; `rules.workers_with_new_evidence`): spammers stop early, on the
    evidence of their real answers as well as their golden ones. The last answer checked is kept
    in Redis; with it lost, every worker of the job is checked again (rules act once)."""
    app = _app()
    redis = queue.get_redis(app)
    redis.delete(queue.guard_key(queue.RULES_JOB, job_id))
    queue.start_rules_check(redis, job_id)
    mark = f"marketplace:rules_checked:{job_id}"
    since = int(redis.get(mark) or 0)
    with session_scope(get_engine(app)) as session:
        last, worker_ids = rules.workers_with_new_evidence(session, job_id, since)
        job_answers = rules.answer_count(session, job_id)
    queue.set_rules_threshold(redis, job_id, job_answers, float(app.config["RULES_CHECK_SHARE"]))
    if last is None:
        return []
    fired = _apply_rules(app, job_id, worker_ids)
    redis.set(mark, last, ex=7 * 24 * 3600)
    return fired


def _apply_rules(app: Flask, job_id: int, worker_ids: list[int] | None) -> list[dict[str, Any]]:
    with session_scope(get_engine(app)) as session:
        fired = rules.apply_rules(session, job_id, worker_ids)
    redis = queue.get_redis(app)
    # Excluded answers change aggregates; the next run finds the rule already acted on.
    for affected in sorted({j for f in fired for j in f.get("jobs_to_aggregate", [])}):
        queue.enqueue_once(redis, app.config["QUEUE_NAME"], queue.AGGREGATE_JOB, affected)
    return fired


def decide_job(job_id: int) -> dict[str, int]:
    """Decide the job's submitted tasks that its last aggregation covers (queued by the sweep
    when the decision step after an aggregation did not run to its end)."""
    app = _app()
    queue.get_redis(app).delete(queue.guard_key(queue.DECIDE_JOB, job_id))
    with session_scope(get_engine(app)) as session:
        return acceptance.decide_job(session, job_id, acceptance.Limits.from_config(app.config))


def run_payouts(run_id: int) -> dict[str, Any]:
    """Pay out one run; safe to run again after a crash (each worker is paid once per run)."""
    app = _app()
    queue.get_redis(app).delete(queue.guard_key(queue.PAYOUT_JOB, run_id))
    summary = payouts.execute_run(get_engine(app), run_id)
    summary["webhooks"] = _tell_webhooks(app, payout_run_id=run_id)
    log.info("payout run %s", summary)
    return summary


class DeliveryFailed(Exception):
    """A webhook delivery to be tried again: raised so that RQ's `Retry` schedules it."""


def deliver_webhook(delivery_id: int) -> dict[str, Any]:
    """One attempt of a webhook delivery (`services/webhooks.py`)."""
    app = _app()
    queue.get_redis(app).delete(queue.guard_key(queue.WEBHOOK_JOB, delivery_id))
    outcome = webhooks.attempt(get_engine(app), delivery_id, webhooks.Policy.from_config(app.config))
    # The status, or the error's kind only: an error's text may quote the hook's URL, which the
    # logs must not hold (a receiver may carry a token in it); the delivery log keeps the text.
    answer = outcome.status or (outcome.error or "").split(":")[0]
    log.info(
        "webhook delivery %s attempt %s: %s",
        delivery_id,
        outcome.attempts,
        "skipped" if outcome.skipped else f"{outcome.state} ({answer})",
    )
    if outcome.retry:
        raise DeliveryFailed(f"delivery {delivery_id} attempt {outcome.attempts}: {answer}")
    return {"delivery_id": delivery_id, "state": outcome.state, "attempts": outcome.attempts}


def _tell_webhooks(app: Flask, job_id: int | None = None, payout_run_id: int | None = None) -> int:
    """Deliveries for the events the database shows (one job's, one run's, or all of the catch-up
    window), queued once committed; how many."""
    policy = webhooks.Policy.from_config(app.config)
    with session_scope(get_engine(app)) as session:
        created = webhooks.record_events(session, utcnow(), policy, job_id=job_id, payout_run_id=payout_run_id)
    _enqueue_deliveries(app, created)
    return len(created)


def _enqueue_deliveries(app: Flask, delivery_ids: list[int]) -> None:
    waits = webhooks.Policy.from_config(app.config).retry_seconds
    queue.enqueue_deliveries(queue.get_redis(app), app.config["QUEUE_NAME"], delivery_ids, list(waits))


def sweep() -> dict[str, Any]:
    """Housekeeping no operator has to remember, and the catch-up after any fault: expire
    leases, finish jobs, and enqueue again, from what the database says, the work a lost Redis
    or a killed worker left undone: aggregations behind the answers, decisions an aggregation
    did not get to, payout runs left open. Enqueued every `SWEEP_SECONDS` by every worker
    process's heartbeat (`workers/schedule.py`), so one failed run or a lost schedule costs one
    interval, never the sweep."""
    app = _app()
    redis = queue.get_redis(app)
    redis.delete(queue.guard_key(queue.SWEEP_JOB))
    now = utcnow()
    expired, due, undecided, finished = 0, [], [], []
    live = (JobState.RUNNING, JobState.PAUSED, JobState.COMPLETED)
    with session_scope(get_engine(app)) as session:
        job_ids = session.execute(select(Job.id).where(Job.state.in_(live))).scalars().all()
    for job_id in job_ids:  # a transaction per job: each locks that job's money rows only
        with session_scope(get_engine(app)) as session:
            expired += reclaim_expired(session, job_id, now)
            if finish_if_done(session, job_id):
                finished.append(job_id)
            run = aggregating.last_run(session, job_id)
            latest = aggregating.latest_answer_id(session, job_id)
            if job_id in finished or (latest and (run is None or run.last_answer_id < latest)):
                due.append(job_id)
            elif run is not None and acceptance.decisions_due(session, job_id, run.last_answer_id):
                undecided.append(job_id)
    with session_scope(get_engine(app)) as session:
        decided = acceptance.decide_overdue(session, acceptance.Limits.from_config(app.config), now)
        stalled = session.execute(select(PayoutRun.id).where(PayoutRun.open.is_(True))).scalars().all()
    name = app.config["QUEUE_NAME"]
    for job_id in due:  # its decisions follow the aggregation
        queue.enqueue_once(redis, name, queue.AGGREGATE_JOB, job_id)
    for job_id in undecided:
        queue.enqueue_once(redis, name, queue.DECIDE_JOB, job_id)
    unchecked = [j for j, n in queue.rules_pending(redis, list(job_ids)).items() if n > 0]
    for job_id in unchecked:  # answers short of the next check's share: checked within an interval
        queue.enqueue_once(redis, name, queue.RULES_JOB, job_id)
    for run_id in stalled:  # a run whose worker died: finish it (paying nobody twice)
        queue.enqueue_once(redis, name, queue.PAYOUT_JOB, run_id, ttl=60)
    events = _tell_webhooks(app)  # events whose deliveries a killed job never recorded
    with session_scope(get_engine(app)) as session:
        lost = webhooks.lost_deliveries(session, utcnow())
    _enqueue_deliveries(app, lost)
    maintained = maintain_tables(get_engine(app))
    return {
        "expired": expired,
        "jobs_finished": finished,
        "aggregations_due": due,
        "decisions_due": undecided,
        "rules_checks_due": unchecked,
        "auto_decided": decided,
        "payout_runs_resumed": stalled,
        "webhook_deliveries": {"new": events, "resumed": len(lost)},
        "maintained": maintained,
    }


def maintain_tables(engine: Engine) -> list[str]:
    """Stand in for autovacuum where a server runs without it.

    The slot pool is consumed by DELETE; until a vacuum, each lease's index scan walks the
    dead entries at the queue's front, and job-scoped plans need fresh statistics.
    """
    done: list[str] = []
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        if connection.execute(text("SELECT current_setting('autovacuum')")).scalar() == "on":
            return []
        stats = connection.execute(
            text("SELECT relname, n_dead_tup, n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = ANY(:t)"),
            {"t": list(HOT_TABLES)},
        ).all()
        for name, dead, modified in stats:
            if dead > 5000:
                connection.execute(text(f'VACUUM (ANALYZE) "{name}"'))
                done.append(f"vacuum {name}")
            elif modified > 20000:
                connection.execute(text(f'ANALYZE "{name}"'))
                done.append(f"analyze {name}")
    return done
