-- bench/sql/measure/cb_call.sql: run chunkbatch job :job with :params and
-- wait for its end in this session with CALL chunkbatch.run_and_wait(),
-- which commits between its looks at the run (no snapshot held meanwhile).
-- t0 is clock_timestamp() just before the run is queued.
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
CALL chunkbatch.run_and_wait(:'job', :'params') \gset
\ir run_figures.sql
