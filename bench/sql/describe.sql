-- bench/sql/describe.sql: the SQL texts of every workload, cutoff shown as
-- <cutoff>, for the results file (one line each: workload|what|text; a
-- newline in a text is written as the two characters \n).
SELECT w.workload, t.what, replace(format(to_jsonb(w) ->> t.what, '<cutoff>'), E'\n', '\n')
  FROM bench_workload w,
       unnest(ARRAY['stmt', 'keyset', 'keyset_in', 'repeat', 'where_sql', 'set_sql', 'static_proc'])
         WITH ORDINALITY AS t(what, i)
 WHERE to_jsonb(w) ->> t.what IS NOT NULL
 ORDER BY w.workload DESC, t.i;
