-- bench/sql/reset.sql: a fresh copy of the table before every measurement.
DROP TABLE IF EXISTS events;
CREATE TABLE events (id bigint NOT NULL, created_at timestamptz NOT NULL,
                     status text NOT NULL, retries int NOT NULL DEFAULT 0, payload text);
INSERT INTO events SELECT * FROM events_tpl;
ALTER TABLE events ADD PRIMARY KEY (id);
CREATE INDEX events_created_at_idx ON events (created_at);
CREATE INDEX events_status_idx ON events (status);
VACUUM (ANALYZE) events;
CHECKPOINT;
