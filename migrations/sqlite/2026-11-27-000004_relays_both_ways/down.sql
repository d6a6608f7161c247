-- Back to one row per task (the onward crossing wins, as before this migration).
CREATE TABLE relays_one_way (
    task_id        INTEGER PRIMARY KEY NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    direction      TEXT NOT NULL,
    peer           TEXT NOT NULL,
    peer_task_id   INTEGER,
    created_at     TEXT NOT NULL
);
INSERT OR REPLACE INTO relays_one_way
    SELECT task_id, direction, peer, peer_task_id, created_at FROM relays ORDER BY direction ASC;
DROP TABLE relays;
ALTER TABLE relays_one_way RENAME TO relays;
