-- bench/sql/measure/run_figures.sql (included): the figures of run :run_id
-- queued at :t0.  Prints state|rows|secs|exec_secs|t0|t1|chunks|
-- avg_chunk_ms|max_chunk_ms|final batch size|run_id; secs runs from t0 to
-- finished_at (queueing and worker start-up count), exec_secs from
-- started_at to finished_at.
SELECT state, rows_done, extract(epoch FROM finished_at) - :t0,
       extract(epoch FROM finished_at - started_at), :t0, extract(epoch FROM finished_at),
       chunks_done, round(avg_chunk_ms::numeric, 3), round(max_chunk_ms::numeric, 3), batch_size, run_id
  FROM chunkbatch.runs WHERE run_id = :run_id;
