-- Where the leading hub process answers, and its recent events for followers (see the
-- PostgreSQL migration). Kept on SQLite too so both schemas stay one; unused there.
ALTER TABLE leadership ADD COLUMN address TEXT NOT NULL DEFAULT '';

CREATE TABLE hub_events (
    id       BIGINT PRIMARY KEY NOT NULL,
    name     TEXT NOT NULL,
    audience TEXT NOT NULL,
    data     TEXT NOT NULL
);
