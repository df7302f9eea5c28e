-- bench/sql/measure/cb_wait.sql: like cb_call.sql, but queue the run with
-- chunkbatch.run() and block in chunkbatch.wait(), whose statement snapshot
-- holds back the xmin horizon for the whole run.
SELECT extract(epoch FROM clock_timestamp()) AS t0, chunkbatch.run(:'job', :'params') AS run_id \gset
SELECT chunkbatch.wait(:run_id) AS final_state \gset
\ir run_figures.sql
