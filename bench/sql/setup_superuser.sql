-- bench/sql/setup_superuser.sql: run once, as the bootstrap superuser, in
-- the fresh database "bench".  Everything else runs as bench_app.
CREATE EXTENSION chunkbatch;
CREATE ROLE bench_app LOGIN;
GRANT CREATE ON SCHEMA public TO bench_app;
GRANT pg_checkpoint TO bench_app;
