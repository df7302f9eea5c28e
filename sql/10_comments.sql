--
-- Every object of the extension says what it is for: its schema,
-- functions, procedures, tables and views, and every column of its tables
-- and views, have a comment (\dn+, \df+, \d+ show them).  Lists what has
-- none; the expected output is empty.
--
WITH members AS (
    SELECT d.classid, d.objid
      FROM pg_depend d
     WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'chunkbatch'))
SELECT pg_describe_object(m.classid, m.objid, 0) AS without_comment
  FROM members m
 WHERE m.classid = 'pg_proc'::regclass
   AND obj_description(m.objid, 'pg_proc') IS NULL
UNION ALL
SELECT pg_describe_object(m.classid, m.objid, 0)
  FROM members m JOIN pg_class c ON c.oid = m.objid
 WHERE m.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'v')
   AND obj_description(m.objid, 'pg_class') IS NULL
UNION ALL
SELECT pg_describe_object('pg_class'::regclass, a.attrelid, a.attnum)
  FROM members m
  JOIN pg_class c ON c.oid = m.objid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE m.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'v')
   AND col_description(a.attrelid, a.attnum) IS NULL
UNION ALL
SELECT 'schema chunkbatch'
 WHERE obj_description('chunkbatch'::regnamespace, 'pg_namespace') IS NULL
ORDER BY 1;

-- The comments are one line each.
SELECT count(*) AS multi_line_comments
  FROM pg_description
 WHERE description LIKE E'%\n%'
   AND (objoid IN (SELECT objid FROM pg_depend
                    WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
                      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'chunkbatch'))
        OR objoid = 'chunkbatch'::regnamespace);
