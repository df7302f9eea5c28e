-- bench/sql/measure/remaining.sql: target rows of workload :w still left.
SELECT bench_sql(:'w', 'remaining') \gexec
