-- Which leadership of the hub processes sharing a PostgreSQL database may write (see the
-- PostgreSQL migration). Kept on SQLite too so both schemas stay one; unused there.
CREATE TABLE leadership (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    since TEXT NOT NULL
);
INSERT INTO leadership (id, epoch, since) VALUES (1, 0, '');
