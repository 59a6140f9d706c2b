-- EXPLAIN (ANALYZE, BUFFERS) of the hot-path queries on a large, half-consumed job.
-- Build a migrated database, then:
--   psql -h 127.0.0.1 -U postgres -d <db> -v items=200000 -f bench/explain_hot.sql
-- Job 1: :items real items (+10% golden) x overlap 3; half of the slots leased in queue order
-- by 997 workers in tasks of 4 real items; 95% of those tasks submitted (one answer per
-- entry), 5% still open, 100 of them expired. Plans are shown as left by the bulk load (no
-- statistics: this server runs with autovacuum off), then after ANALYZE, then after VACUUM.
\set ON_ERROR_STOP on
\if :{?items} \else \set items 200000 \endif
\timing off
INSERT INTO job (id, requester_id, title, instructions, annotation, overlap, golden_ratio, items_per_task,
                 reward_cents, aggregation, lease_seconds, state, created_at, updated_at)
VALUES (1, 1, 'explain', 'x', '{"type": "classification", "labels": ["a", "b", "c", "d"]}', 3, 0.1, 5, 1,
        'dawid_skene', 600, 'running', now(), now());
INSERT INTO item (id, job_id, data, is_golden, answer, created_at)
SELECT i, 1, json_build_object('text', 'item ' || i), i % 10 = 0, CASE WHEN i % 10 = 0 THEN 'a' END, now()
FROM generate_series(1, :items * 10 / 9) i;
INSERT INTO slot (job_id, item_id, round)
SELECT 1, id, r FROM item, generate_series(0, 2) r WHERE NOT is_golden ORDER BY r, id;
-- k-th slot in queue order -> task k/4, worker (k/4) % 997 + 2
CREATE TEMP TABLE taken AS
SELECT row_number() OVER (ORDER BY round, item_id) - 1 AS k, id, item_id, round FROM slot;
DELETE FROM taken WHERE k >= (SELECT count(*) / 2 FROM taken);
INSERT INTO assignment (id, job_id, worker_id, state, created_at, expires_at, finished_at)
SELECT a, 1, a % 997 + 2, CASE WHEN a < n * 0.95 THEN 'submitted' ELSE 'leased' END, now() - interval '1 hour',
       CASE WHEN a >= n - 100 THEN now() - interval '10 minutes' ELSE now() + interval '10 minutes' END,
       CASE WHEN a < n * 0.95 THEN now() END
FROM (SELECT generate_series(0, max(k) / 4) a, max(k) / 4 + 1 n FROM taken) s;
INSERT INTO assignmentitem (assignment_id, job_id, worker_id, item_id, round, position)
SELECT k / 4, 1, (k / 4) % 997 + 2, item_id, round, k % 4 FROM taken;
INSERT INTO answer (job_id, item_id, worker_id, assignment_id, round, label, is_golden, excluded, created_at)
SELECT 1, ai.item_id, ai.worker_id, ai.assignment_id, ai.round, 'a', false, false, now()
FROM assignmentitem ai JOIN assignment a ON a.id = ai.assignment_id WHERE a.state = 'submitted';
DELETE FROM slot WHERE id IN (SELECT id FROM taken);
SELECT setval(pg_get_serial_sequence('assignment', 'id'), (SELECT max(id) FROM assignment));
SELECT (SELECT count(*) FROM slot) AS free_slots, (SELECT count(*) FROM assignment) AS assignments,
       (SELECT count(*) FROM answer) AS answers;

\set w 500
\set a 1000
PREPARE take_slots AS SELECT slot.id, slot.item_id, slot.round FROM slot WHERE slot.job_id = 1
  AND NOT EXISTS (SELECT 1 FROM assignmentitem WHERE assignmentitem.job_id = 1 AND assignmentitem.worker_id = 502
                  AND assignmentitem.item_id = slot.item_id)
  ORDER BY slot.round, slot.item_id LIMIT 8 FOR UPDATE SKIP LOCKED;
PREPARE reclaim AS SELECT assignment.id FROM assignment WHERE assignment.job_id = 1 AND assignment.state = 'leased'
  AND assignment.expires_at < now() - interval '60 seconds' ORDER BY assignment.expires_at LIMIT 200
  FOR UPDATE SKIP LOCKED;
PREPARE lock_assignment AS SELECT * FROM assignment WHERE assignment.id = 70000 FOR UPDATE;
PREPARE submit_join AS SELECT ai.id, ai.item_id, ai.round, item.is_golden, item.answer
  FROM assignmentitem ai JOIN item ON item.id = ai.item_id WHERE ai.assignment_id = 70000 AND item.job_id = 1;
PREPARE item_data AS SELECT item.id, item.data FROM item WHERE item.job_id = 1
  AND item.id IN (150001, 150002, 150003, 150004, 150010);
PREPARE golden_seen AS SELECT item_id FROM assignmentitem WHERE job_id = 1 AND worker_id = 502
  AND item_id IN (10, 20, 30, 40, 50, 60, 70, 80);
PREPARE pool_empty AS SELECT EXISTS (SELECT 1 FROM slot WHERE slot.job_id = 1);

\echo '=== no statistics (as after a bulk load with autovacuum off) ==='
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE take_slots;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE reclaim;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE lock_assignment;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE submit_join;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE item_data;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE golden_seen;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE pool_empty;
ROLLBACK;
\echo '=== after ANALYZE (dead slot tuples still there) ==='
ANALYZE;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE take_slots;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE reclaim;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE lock_assignment;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE submit_join;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE item_data;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE golden_seen;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE pool_empty;
ROLLBACK;
\echo '=== after VACUUM slot ==='
VACUUM slot;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE take_slots;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE pool_empty;
ROLLBACK;
