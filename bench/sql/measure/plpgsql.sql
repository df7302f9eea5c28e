-- bench/sql/measure/plpgsql.sql: workload :w by the keyset_loop procedure
-- (setup.sql), COMMIT every :batch rows.  Prints rows|secs|t0|t1|chunks.
SELECT bench_sql(:'w', 'keyset') AS ks, cursor_type AS ct FROM bench_workload WHERE workload = :'w' \gset
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
CALL keyset_loop(:'ks', CAST(:'batch' AS int), CAST(NULL AS :ct)) \gset
SELECT :total, extract(epoch FROM clock_timestamp()) - :t0, :t0, extract(epoch FROM clock_timestamp()), :chunks;
