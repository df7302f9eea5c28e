-- bench/sql/describe_jobs.sql: the statement and count_sql chunkbatch wrote
-- for the declarative jobs (create_purge / create_update), cutoff shown as
-- <cutoff>, for the results file (workload|what|text, newlines as \n).
SELECT w.workload, t.what,
       replace(regexp_replace(t.sql, 'to_timestamp\(\d+\)', '<cutoff>', 'g'), E'\n', '\n')
  FROM bench_workload w
  JOIN chunkbatch.jobs j ON j.job_name = 'b_' || w.workload || '_decl_adaptive_50ms_count',
       LATERAL (VALUES (1, 'decl_chunk_sql', j.chunk_sql), (2, 'decl_count_sql', j.count_sql),
                       (3, 'decl_range', format('%s.%s', j.range_table, j.range_key))) AS t(i, what, sql)
 ORDER BY w.workload DESC, t.i;
