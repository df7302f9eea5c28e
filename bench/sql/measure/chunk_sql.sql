-- bench/sql/measure/chunk_sql.sql: the keyset chunk SQL of workload :w and
-- its cursor type, for the client loop.  Prints chunk_sql|cursor_type.
SELECT bench_sql(:'w', 'keyset'), cursor_type FROM bench_workload WHERE workload = :'w';
