-- bench/sql/describe.sql: the SQL texts of every workload, cutoff shown as
-- <cutoff>, for the results file (one line each: workload|what|text).
SELECT w.workload, t.what, format(to_jsonb(w) ->> t.what, '<cutoff>')
  FROM bench_workload w,
       unnest(ARRAY['stmt', 'keyset', 'keyset_in', 'repeat']) WITH ORDINALITY AS t(what, i)
 ORDER BY w.workload DESC, t.i;
