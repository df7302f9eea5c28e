-- bench/sql/measure/first_chunk.sql: sample :i of run() -> first committed
-- chunk, with job b_fc (setup.sql).  Start: clock_timestamp() in the same
-- SELECT just before run() (autocommit, so the caller's commit counts).
-- End: the commit time of the first chunk's transaction.  Prints state|ms.
SELECT extract(epoch FROM clock_timestamp()) AS t0,
       chunkbatch.run('b_fc', jsonb_build_object('i', CAST(:'i' AS int))) AS run_id \gset
SELECT chunkbatch.wait(:run_id) AS state \gset
SELECT :'state', (extract(epoch FROM pg_xact_commit_timestamp(xmin)) - :t0) * 1000
  FROM fc_log WHERE i = CAST(:'i' AS int);
