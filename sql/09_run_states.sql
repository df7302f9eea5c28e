--
-- 09_run_states: the run states are defined once, in the library
-- (chunkbatch.run_states()); the CHECK constraint of chunkbatch.runs must
-- allow exactly those states, and the sets must be consistent.
--
SELECT state, active, resting, final, resumable
  FROM chunkbatch.run_states() ORDER BY state;

-- The CHECK constraint's states, parsed from its definition.
WITH c AS (
  SELECT pg_get_constraintdef(oid) AS def
    FROM pg_constraint
   WHERE conrelid = 'chunkbatch.runs'::regclass AND conname = 'runs_state_check'),
checked AS (
  SELECT m[1] AS state FROM c, regexp_matches(c.def, '''([a-z]+)''', 'g') AS m)
SELECT (SELECT array_agg(state ORDER BY state) FROM checked) =
       (SELECT array_agg(state ORDER BY state) FROM chunkbatch.run_states())
       AS check_constraint_matches_library,
       (SELECT array_agg(state ORDER BY state) FROM checked
         WHERE state NOT IN (SELECT state FROM chunkbatch.run_states())) AS only_in_check,
       (SELECT array_agg(state ORDER BY state) FROM chunkbatch.run_states()
         WHERE state NOT IN (SELECT state FROM checked)) AS only_in_library;

-- Every state is in exactly one of: active, resting, final.
SELECT state FROM chunkbatch.run_states()
 WHERE active::int + resting::int + final::int <> 1;

-- The scheduler's partial indexes of active runs cover exactly the active states.
SELECT indexrelid::regclass AS index,
       (SELECT array_agg(m[1] ORDER BY m[1])
          FROM regexp_matches(pg_get_expr(indpred, indrelid), '''([a-z]+)''', 'g') AS m) =
       (SELECT array_agg(state ORDER BY state) FROM chunkbatch.run_states() WHERE active)
       AS index_predicate_is_the_active_states
  FROM pg_index
 WHERE indexrelid IN ('chunkbatch.runs_owner_queue_idx'::regclass,
                      'chunkbatch.runs_group_queue_idx'::regclass)
 ORDER BY 1::text;
