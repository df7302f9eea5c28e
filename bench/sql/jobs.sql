-- bench/sql/jobs.sql: the chunkbatch jobs and the static PL/pgSQL
-- procedures, (re)created for every table size (the purge cutoff is part of
-- their SQL).  Method cb_<suffix> of bench/methods.tsv runs job
-- b_<workload>_<suffix>; method plpgsql_static_<n> CALLs <workload>_static(n).
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

-- Declarative (range-mode) jobs: create_purge / create_update with the
-- workload's condition; count_rows => false skips the count(*) at run start
-- (all but the _count variant).
SELECT bench_decl_job(workload, 'decl_1000', 1000, NULL, false),
       bench_decl_job(workload, 'decl_10000', 10000, NULL, false),
       bench_decl_job(workload, 'decl_adaptive_50ms', 1000, 50, false),
       bench_decl_job(workload, 'decl_adaptive_50ms_count', 1000, 50, true)
  FROM bench_workload ORDER BY workload;

-- The static procedures purge_static and flip_static.
SELECT bench_sql(workload, 'static_proc') FROM bench_workload ORDER BY workload \gexec
