-- A task can cross twice: relayed here by one peer and relayed on to another. Keep one row
-- per direction, so the onward peer's result is recognised and reported back to the first.
CREATE TABLE relays_by_direction (
    task_id        INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    direction      TEXT NOT NULL,
    peer           TEXT NOT NULL,
    peer_task_id   INTEGER,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (task_id, direction)
);
INSERT INTO relays_by_direction SELECT task_id, direction, peer, peer_task_id, created_at FROM relays;
DROP TABLE relays;
ALTER TABLE relays_by_direction RENAME TO relays;
