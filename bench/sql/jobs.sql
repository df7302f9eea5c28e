-- bench/sql/jobs.sql: the chunkbatch jobs, (re)created for every table size
-- (the purge cutoff is part of the chunk SQL).  Method cb_<suffix> of
-- bench/methods.tsv runs job b_<workload>_<suffix>.
SELECT chunkbatch.drop_job(j.job_name)
  FROM chunkbatch.jobs j JOIN bench_workload w ON j.job_name LIKE 'b\_' || w.workload || '\_%';

SELECT chunkbatch.create_job('b_' || workload || '_keyset_1000', bench_sql(workload, 'keyset'),
                             batch_size => 1000, cursor_type => cursor_type),
       chunkbatch.create_job('b_' || workload || '_keyset_10000', bench_sql(workload, 'keyset'),
                             batch_size => 10000, cursor_type => cursor_type),
       chunkbatch.create_job('b_' || workload || '_repeat_1000', bench_sql(workload, 'repeat'),
                             batch_size => 1000),
       chunkbatch.create_job('b_' || workload || '_repeat_10000', bench_sql(workload, 'repeat'),
                             batch_size => 10000),
       chunkbatch.create_job('b_' || workload || '_adaptive_50ms', bench_sql(workload, 'keyset'),
                             batch_size => 1000, cursor_type => cursor_type, target_chunk_ms => 50),
       chunkbatch.create_job('b_' || workload || '_keyset_1000_sync', bench_sql(workload, 'keyset'),
                             batch_size => 1000, cursor_type => cursor_type, synchronous_commit => true),
       chunkbatch.create_job('b_' || workload || '_adaptive_50ms_in', bench_sql(workload, 'keyset_in'),
                             batch_size => 1000, cursor_type => cursor_type, target_chunk_ms => 50),
       chunkbatch.create_job('b_' || workload || '_repeat_1000_wait', bench_sql(workload, 'repeat'),
                             batch_size => 1000)
  FROM bench_workload ORDER BY workload;
