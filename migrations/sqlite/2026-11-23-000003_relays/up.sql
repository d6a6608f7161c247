-- Tasks that crossed between hubs: `outbound` tasks this hub relayed to a peer (the peer's
-- task id once known), `inbound` tasks a peer relayed here (the peer's own task id, for
-- reporting the result back).
CREATE TABLE relays (
    task_id        INTEGER PRIMARY KEY NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    direction      TEXT NOT NULL,
    peer           TEXT NOT NULL,
    peer_task_id   INTEGER,
    created_at     TEXT NOT NULL
);
