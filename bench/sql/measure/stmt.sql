-- bench/sql/measure/stmt.sql: the whole job of workload :w in one statement,
-- one transaction.  Prints rows|secs|t0|t1 (t0, t1: epoch seconds).
SELECT bench_sql(:'w', 'stmt') AS stmt \gset
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
:stmt;
\set rows :ROW_COUNT
SELECT :rows, extract(epoch FROM clock_timestamp()) - :t0, :t0, extract(epoch FROM clock_timestamp());
