--
-- Range mode and declarative jobs: what create_purge and create_update
-- write, bad tables, keys and filters (each a clear error that leaves the
-- catalog as it was), the filter reading the run's parameters as $3, and
-- alter_job on a range-mode job.
--
SELECT wait_idle();

CREATE TABLE cb_rng (id bigint PRIMARY KEY, grp int NOT NULL, n int NOT NULL DEFAULT 0, u int);
INSERT INTO cb_rng (id, grp) SELECT g, g % 5 FROM generate_series(1, 1000) g;
CREATE TABLE cb_rng_nopk (a int, b int);
CREATE TABLE cb_rng_comp (a int, b int, PRIMARY KEY (a, b));
CREATE INDEX ON cb_rng (grp);
CREATE UNIQUE INDEX cb_rng_partial ON cb_rng (u) WHERE u > 0;
CREATE VIEW cb_rng_view AS SELECT * FROM cb_rng;

SELECT chunkbatch.create_purge('regress_rng_purge', 'cb_rng', 'grp = 4', batch_size => 70) > 0 AS created;
SELECT chunkbatch.create_update('regress_rng_upd', 'cb_rng', 'n = n + 1',
    $$grp = ($3->>'grp')::int$$, batch_size => 30, priority => 5) > 0 AS created;
SELECT job_name, cursor_type, range_table, range_key, range_filter, priority
  FROM chunkbatch.jobs WHERE job_name LIKE 'regress\_purge' OR job_name = 'regress_rng_upd'
 ORDER BY job_name;
SELECT chunk_sql, count_sql FROM chunkbatch.jobs WHERE job_name = 'regress_rng_upd';
SELECT * FROM chunkbatch.range_job_sql('delete', 'cb_rng', NULL, 'grp = 1', 'id', false);

SELECT catalog_digest() AS before \gset
-- bad tables and keys
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_missing', 'true')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', NULL, 'true')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', NULL)$$);
SELECT expect_error($$SELECT chunkbatch.create_update('regress_x', 'cb_rng', NULL, 'true')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng_nopk', 'true')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng_comp', 'true')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'true', key_column => 'grp')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'true', key_column => 'u')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'true', key_column => 'nope')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'true', key_column => 'ctid')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng_view', 'true', key_column => 'id')$$);
SELECT expect_error($$SELECT chunkbatch.range_job_sql('truncate', 'cb_rng', NULL, 'true', NULL, true)$$);
-- bad filters
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'true) OR (true')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'true; DROP TABLE cb_rng')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'id > $1')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'nope = 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', '-- nothing')$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'grp')$$);
-- range settings of create_job
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'DELETE FROM cb_rng WHERE id BETWEEN $1 AND $2', range_table => 'cb_rng')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'DELETE FROM cb_rng WHERE id BETWEEN $1 AND $2', range_key => 'id')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'DELETE FROM cb_rng WHERE id BETWEEN $1 AND $2', range_table => 'cb_rng', range_key => 'id', cursor_type => 'int')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'DELETE FROM cb_rng WHERE nope BETWEEN $1 AND $2', range_table => 'cb_rng', range_key => 'id')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', priority => 5000)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', priority => NULL)$$);
-- alter_job of a range-mode job
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_rng_purge', range_key => 'grp')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_rng_purge', range_filter => 'true) OR (true')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_rng_purge', cursor_type => 'text')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_rng_purge', reset => '{range_table}')$$);
-- steps
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', before_sql => ARRAY['SELECT 1; SELECT 2'])$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', after_sql => ARRAY['COMMIT'])$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', after_sql => ARRAY['ANALYZE', NULL])$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', after_sql => ARRAY['  '])$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', after_sql => ARRAY[['ANALYZE'], ['VACUUM']])$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', after_sql => ARRAY['ANALYZE (']) $$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', analyze_after => true)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', vacuum_after => NULL)$$);
SELECT expect_error($$SELECT chunkbatch.create_purge('regress_x', 'cb_rng', 'true', analyze_after => NULL)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_rng_purge', before_sql => ARRAY['BEGIN'])$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_rng_purge', reset => '{rebuild_indexes}')$$);
SELECT catalog_digest() = :'before' AS catalog_unchanged;

-- a declarative purge and an update whose filter reads $3
SELECT chunkbatch.run('regress_rng_purge', wait => true) > 0 AS ran;
SELECT count(*) FILTER (WHERE grp = 4) AS left_matching, count(*) AS left FROM cb_rng;
SELECT chunkbatch.run('regress_rng_upd', '{"grp": 2}', wait => true) > 0 AS ran;
SELECT grp, n, count(*) FROM cb_rng GROUP BY grp, n ORDER BY grp, n;
-- the chunks cover only the span of keys the filter matched at the start
SELECT job_name, state, rows_done, chunks_done, total_estimate, cursor, priority,
       range_first, range_last
  FROM chunkbatch.runs WHERE job_name IN ('regress_rng_purge', 'regress_rng_upd') ORDER BY run_id;
-- a filter that matches nothing: no span, one chunk that finds no key
SELECT chunkbatch.run('regress_rng_upd', '{"grp": 7}', wait => true) > 0 AS ran;
SELECT state, rows_done, chunks_done, total_estimate, cursor, range_first, range_last
  FROM chunkbatch.runs WHERE job_name = 'regress_rng_upd' ORDER BY run_id DESC LIMIT 1;
-- matches only in the middle of a uuid key (a type without min and max):
-- the walk from each end gives up, the read of the matching rows finds the
-- span in the key's own order, and answers the count
CREATE TABLE cb_rng_uuid (id uuid PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO cb_rng_uuid (id) SELECT md5(g::text)::uuid FROM generate_series(1, 25000) g;
SELECT chunkbatch.create_update('regress_rng_uuid', 'cb_rng_uuid', 'n = n + 1',
    $$id::text >= '8' AND id::text < '9'$$, batch_size => 500) > 0 AS created;
SELECT chunkbatch.run('regress_rng_uuid', wait => true) > 0 AS ran;
SELECT r.state, r.rows_done = e.c AS all_rows, r.total_estimate = e.c AS counted,
       r.range_first = e.f::text AND r.range_last = e.l::text AS span_is_first_and_last,
       (SELECT count(*) FROM cb_rng_uuid WHERE n <> (id::text >= '8' AND id::text < '9')::int) AS wrong
  FROM chunkbatch.runs r,
       (SELECT count(*) AS c, (array_agg(id ORDER BY id))[1] AS f, (array_agg(id ORDER BY id DESC))[1] AS l
          FROM cb_rng_uuid WHERE id::text >= '8' AND id::text < '9') e
 WHERE r.job_name = 'regress_rng_uuid';
-- a key named like the span search's own aliases, and a nullable uuid key
-- with a matching row whose key is NULL (range mode never visits it)
CREATE TABLE cb_rng_m (m int PRIMARY KEY, v int NOT NULL DEFAULT 0, n int NOT NULL DEFAULT 0);
INSERT INTO cb_rng_m (m, v) SELECT g, (g IN (5, 50, 95))::int FROM generate_series(1, 100) g;
SELECT chunkbatch.create_update('regress_rng_m', 'cb_rng_m', 'n = n + 1', 'v = 1', batch_size => 10) > 0 AS created;
SELECT chunkbatch.run('regress_rng_m', wait => true) > 0 AS ran;
SELECT r.state, r.rows_done, r.range_first, r.range_last,
       (SELECT string_agg(m::text, ',' ORDER BY m) FROM cb_rng_m WHERE n = 1) AS processed
  FROM chunkbatch.runs r WHERE r.job_name = 'regress_rng_m';
CREATE TABLE cb_rng_nul (id uuid UNIQUE, n int NOT NULL DEFAULT 0);
INSERT INTO cb_rng_nul (id) SELECT md5(g::text)::uuid FROM generate_series(1, 25000) g;
INSERT INTO cb_rng_nul (id) VALUES (NULL);
SELECT chunkbatch.create_update('regress_rng_nul', 'cb_rng_nul', 'n = n + 1',
    $$id IS NULL OR (id::text >= '8' AND id::text < '9')$$, key_column => 'id', batch_size => 500) > 0 AS created;
SELECT chunkbatch.run('regress_rng_nul', wait => true) > 0 AS ran;
SELECT r.state, r.rows_done = e.c AS all_keyed_rows, r.total_estimate = e.c + 1 AS counted_with_null,
       r.range_first = e.f::text AND r.range_last = e.l::text AS span_is_first_and_last
  FROM chunkbatch.runs r,
       (SELECT count(*) AS c, (array_agg(id ORDER BY id))[1] AS f, (array_agg(id ORDER BY id DESC))[1] AS l
          FROM cb_rng_nul WHERE id::text >= '8' AND id::text < '9') e
 WHERE r.job_name = 'regress_rng_nul';

-- alter_job: a new filter and key check; leaving range mode needs new SQL
SELECT chunkbatch.alter_job('regress_rng_purge', range_filter => 'grp = 3 AND n = 0');
SELECT range_filter, cursor_type FROM chunkbatch.jobs WHERE job_name = 'regress_rng_purge';
SELECT chunkbatch.alter_job('regress_rng_purge', chunk_sql => 'DELETE FROM cb_rng WHERE id IN (SELECT id FROM cb_rng WHERE grp = 3 LIMIT $1)',
                            reset => '{range_table, range_key, range_filter, count_sql}');
SELECT range_table, range_key, range_filter, cursor_type, count_sql FROM chunkbatch.jobs WHERE job_name = 'regress_rng_purge';

-- steps are kept as given; reset removes them
SELECT chunkbatch.alter_job('regress_rng_upd', after_sql => ARRAY['ANALYZE cb_rng', 'SELECT 1'],
                            analyze_after => true);
SELECT after_sql, analyze_after, rebuild_indexes FROM chunkbatch.jobs WHERE job_name = 'regress_rng_upd';
SELECT chunkbatch.alter_job('regress_rng_upd', reset => '{after_sql}');
SELECT after_sql FROM chunkbatch.jobs WHERE job_name = 'regress_rng_upd';
-- A failed run is resumed from its checkpoint only while the job's keys
-- are still of the kind the checkpoint holds: under another key (ext
-- runs the other way) it would repeat rows 1-400 and skip rows 600-999.
CREATE TABLE cb_rng_kind (id bigint PRIMARY KEY, ext bigint UNIQUE NOT NULL,
                          n int NOT NULL DEFAULT 0, bad boolean NOT NULL DEFAULT false);
INSERT INTO cb_rng_kind SELECT i, 1000 - i, 0, i = 450 FROM generate_series(1, 999) i;
CREATE FUNCTION cb_rng_kind_ok(bad boolean) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN IF bad THEN RAISE EXCEPTION 'bad row'; END IF; RETURN true; END$$;
SELECT chunkbatch.create_update('regress_rng_kind', 'cb_rng_kind', 'n = n + 1', 'cb_rng_kind_ok(bad)',
                                batch_size => 100, max_retries => 0) > 0 AS created;
SELECT expect_error($$SELECT chunkbatch.run('regress_rng_kind', wait => true)$$);
SELECT state, cursor, cursor_kind FROM chunkbatch.runs WHERE job_name = 'regress_rng_kind';
UPDATE cb_rng_kind SET bad = false;
-- The statement and count_sql create_update wrote follow the new key.
SELECT chunkbatch.alter_job('regress_rng_kind', range_key => 'ext');
SELECT chunk_sql, count_sql, cursor_type FROM chunkbatch.jobs WHERE job_name = 'regress_rng_kind';
SELECT expect_error(format('SELECT chunkbatch.resume(%s)', run_id)), state
  FROM chunkbatch.runs WHERE job_name = 'regress_rng_kind';
SELECT chunkbatch.alter_job('regress_rng_kind', range_key => 'id');
SELECT chunkbatch.resume(run_id) FROM chunkbatch.runs WHERE job_name = 'regress_rng_kind';
SELECT chunkbatch.wait(run_id) FROM chunkbatch.runs WHERE job_name = 'regress_rng_kind';
SELECT n, count(*) FROM cb_rng_kind GROUP BY n ORDER BY n;
-- A run that failed before its first checkpoint starts over under the new key.
UPDATE cb_rng_kind SET n = 0, bad = (id = 950);
SELECT chunkbatch.alter_job('regress_rng_kind', range_key => 'ext');
SELECT expect_error($$SELECT chunkbatch.run('regress_rng_kind', wait => true)$$);
UPDATE cb_rng_kind SET bad = false;
SELECT chunkbatch.alter_job('regress_rng_kind', range_key => 'id');
SELECT cursor IS NULL AS no_checkpoint, cursor_kind, chunkbatch.resume(run_id)
  FROM chunkbatch.runs WHERE job_name = 'regress_rng_kind' AND state = 'failed';
SELECT chunkbatch.wait(max(run_id)) FROM chunkbatch.runs WHERE job_name = 'regress_rng_kind';
SELECT n, count(*) FROM cb_rng_kind GROUP BY n ORDER BY n;
-- A new range_filter reaches the written statement too (and a count_sql
-- given in the same call is kept); a statement changed by hand is kept.
SELECT chunkbatch.alter_job('regress_rng_kind', range_filter => 'n < 2 AND cb_rng_kind_ok(bad)',
                            count_sql => 'SELECT 7::bigint');
SELECT chunk_sql, count_sql FROM chunkbatch.jobs WHERE job_name = 'regress_rng_kind';
UPDATE cb_rng_kind SET n = 5 WHERE id % 2 = 0;
SELECT chunkbatch.run('regress_rng_kind', wait => true) > 0 AS ran;
SELECT n, count(*) FROM cb_rng_kind GROUP BY n ORDER BY n;
-- Resetting cursor_type in range mode gives back the key's type.
SELECT chunkbatch.alter_job('regress_rng_kind', reset => '{cursor_type}', validate => false);
SELECT cursor_type FROM chunkbatch.jobs WHERE job_name = 'regress_rng_kind';
-- A range-mode job keeps a key: resetting it alone is refused.
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_rng_kind', reset => '{range_key}')$$);
SELECT range_key, chunk_sql LIKE '%.id BETWEEN%' AS statement_kept FROM chunkbatch.jobs WHERE job_name = 'regress_rng_kind';
SELECT chunkbatch.alter_job('regress_rng_kind', chunk_sql => 'UPDATE cb_rng_kind SET n = n + 10 WHERE id BETWEEN $1 AND $2');
SELECT chunkbatch.alter_job('regress_rng_kind', range_filter => 'n < 3');
SELECT chunk_sql, range_filter FROM chunkbatch.jobs WHERE job_name = 'regress_rng_kind';

-- rebuild_indexes on a partition: the index it has from its partitioned
-- table's index stays (it cannot be dropped alone), its own is rebuilt.
CREATE TABLE cb_rng_pt (id int PRIMARY KEY, v int, w int) PARTITION BY RANGE (id);
CREATE TABLE cb_rng_pt1 PARTITION OF cb_rng_pt FOR VALUES FROM (0) TO (1000);
CREATE INDEX cb_rng_pt_v ON cb_rng_pt (v);
CREATE INDEX cb_rng_pt1_w ON cb_rng_pt1 (w);
INSERT INTO cb_rng_pt SELECT g, g, g FROM generate_series(1, 900) g;
CREATE TABLE cb_rng_pt_before AS SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'cb_rng_pt1';
SELECT chunkbatch.create_update('regress_rng_pt', 'cb_rng_pt1', 'v = v + 1', 'true', rebuild_indexes => true) > 0 AS created;
-- CALL, not run(wait => true): that call's snapshot would hold up CREATE INDEX CONCURRENTLY.
CALL chunkbatch.run_and_wait('regress_rng_pt') \gset
SELECT r.state, r.steps FROM chunkbatch.runs r WHERE r.job_name = 'regress_rng_pt';
SELECT (SELECT count(*) FROM cb_rng_pt1 WHERE v = id + 1) AS updated,
       (SELECT count(*) FROM (SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'cb_rng_pt1'
                              EXCEPT SELECT * FROM cb_rng_pt_before) d) AS changed_indexes,
       (SELECT count(*) FROM pg_indexes WHERE tablename = 'cb_rng_pt1') AS indexes;
SELECT chunkbatch.drop_job('regress_rng_pt');
DROP TABLE cb_rng_pt, cb_rng_pt_before;

SELECT chunkbatch.drop_job('regress_rng_purge'), chunkbatch.drop_job('regress_rng_upd'),
       chunkbatch.drop_job('regress_rng_uuid'), chunkbatch.drop_job('regress_rng_m'),
       chunkbatch.drop_job('regress_rng_nul'), chunkbatch.drop_job('regress_rng_kind');
DROP VIEW cb_rng_view;
DROP TABLE cb_rng, cb_rng_nopk, cb_rng_comp, cb_rng_uuid, cb_rng_m, cb_rng_nul, cb_rng_kind;
DROP FUNCTION cb_rng_kind_ok(boolean);
