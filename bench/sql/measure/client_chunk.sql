-- bench/sql/measure/client_chunk.sql: one chunk of the client loop, run by
-- its own psql process (its own connection).  The chunk SQL :ks gets
-- $1 = :batch, $2 = :last (empty: NULL, the first chunk), $3 = '{}' as the
-- parameters of a prepared statement; PREPARE and EXECUTE go to the server
-- in one message.  Prints rows|greatest key.
PREPARE chunk(int, :ct, jsonb) AS WITH c(k) AS (:ks) SELECT count(*), max(k) FROM c \;
EXECUTE chunk(CAST(:'batch' AS int), CAST(NULLIF(:'last', '') AS :ct), '{}');
