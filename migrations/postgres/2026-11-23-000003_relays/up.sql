-- Tasks that crossed between hubs: `outbound` tasks this hub relayed to a peer (the peer's
-- task id once known), `inbound` tasks a peer relayed here (the peer's own task id, for
-- reporting the result back).
-- task_id is always written by the hub (it is the relayed task's id), so it is a plain
-- integer key here, not an identity column.
CREATE TABLE relays (
    task_id        integer PRIMARY KEY NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    direction      text NOT NULL,
    peer           text NOT NULL,
    peer_task_id   integer,
    created_at     text NOT NULL
);
