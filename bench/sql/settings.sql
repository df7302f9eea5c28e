-- bench/sql/settings.sql: the server settings the report lists.
SELECT name || ' = ' || setting || coalesce(' ' || unit, '') FROM pg_settings
 WHERE source = 'configuration file' AND name NOT IN ('port', 'unix_socket_directories', 'listen_addresses', 'log_line_prefix')
    OR name IN ('synchronous_commit', 'chunkbatch.scheduler_idle_exit', 'chunkbatch.max_workers', 'work_mem', 'checkpoint_timeout', 'wal_level', 'fsync')
 ORDER BY name;
