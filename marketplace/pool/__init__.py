"""The work pool: the one place that writes `slot`, `assignment`, `assignmentitem` and `answer`.

- `lease.lease_task`: the next task for a worker (one statement; qualification tests in `tests`);
- `submit.submit`: a task's answers, once (one statement when in order; `refusals` otherwise);
- `skip.skip`, `release.release_assignments` / `reclaim_expired`: leases that end without answers;
- `slots`: what the pool issues per item (launch, new items, overlap raised or lowered, rounds
  given back, dynamic overlap), and the job's state that follows it;
- `answers.exclude`: a banned worker's answers left out, their redundancy issued again;
- `view.own_assignment`: a worker's own task read back.

Views, the hot-path middleware, bans, jobs and the RQ jobs call these; nothing else writes the
pool's tables.
"""
