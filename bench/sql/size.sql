-- bench/sql/size.sql: the template table of :n rows that every measurement
-- copies.  created_at is unique and increases with id; a quarter of the
-- rows are INIT, a quarter FAIL, half COMPLETE.
TRUNCATE bench_size;
INSERT INTO bench_size VALUES (CAST(:'n' AS bigint));
DROP TABLE IF EXISTS events_tpl;
CREATE TABLE events_tpl AS
SELECT i::bigint AS id,
       to_timestamp(1577836800 + i) AS created_at,
       (CASE i % 4 WHEN 0 THEN 'INIT' WHEN 1 THEN 'FAIL' ELSE 'COMPLETE' END) AS status,
       0 AS retries,
       md5(i::text) AS payload
  FROM generate_series(1, CAST(:'n' AS int)) AS i;
-- Vacuumed now, so that autovacuum has nothing to do on it during the
-- measurements that follow.
VACUUM (FREEZE, ANALYZE) events_tpl;
