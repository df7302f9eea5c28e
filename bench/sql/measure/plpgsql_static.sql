-- bench/sql/measure/plpgsql_static.sql: workload :w by the hand-written
-- procedure <workload>_static (static statements, see static_proc in
-- workloads.sql), COMMIT every :batch rows.  Prints rows|secs|t0|t1|chunks.
SELECT :'w' || '_static' AS proc \gset
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
CALL :"proc"(CAST(:'batch' AS int)) \gset
SELECT :total, extract(epoch FROM clock_timestamp()) - :t0, :t0, extract(epoch FROM clock_timestamp()), :chunks;
