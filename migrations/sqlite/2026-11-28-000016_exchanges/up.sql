-- The MESS exchange (seed 003): named exchanges an admin creates; executors (each an
-- m3shd agent with a `mess_{exchange}_…` key in `tokens`); requests (each an m3shd task
-- pinned to its exchange, so it is pulled, never dispatched) with their thread messages;
-- and the events written after commit to the date-partitioned JSON Lines log.
CREATE TABLE exchanges (
    exchange_id       TEXT PRIMARY KEY NOT NULL,
    open_registration BOOLEAN NOT NULL DEFAULT 0,
    created_by        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE TABLE exchange_executors (
    exchange_id   TEXT NOT NULL REFERENCES exchanges (exchange_id) ON DELETE CASCADE,
    executor_id   TEXT NOT NULL,
    agent_id      TEXT NOT NULL UNIQUE,   -- the m3shd agent it is
    display_name  TEXT NOT NULL,
    capabilities  TEXT NOT NULL,          -- JSON array
    notifications TEXT NOT NULL,          -- Fernet: JSON array (its URLs are secrets)
    preferences   TEXT NOT NULL,          -- JSON object
    last_seen     TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (exchange_id, executor_id)
);
CREATE TABLE exchange_requests (
    task_id      INTEGER PRIMARY KEY NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    exchange_id  TEXT NOT NULL REFERENCES exchanges (exchange_id) ON DELETE CASCADE,
    ref          TEXT NOT NULL,
    requestor_id TEXT NOT NULL,
    priority     TEXT NOT NULL,
    UNIQUE (exchange_id, ref)
);
CREATE TABLE exchange_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    task_id    INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    from_id    TEXT NOT NULL,
    mess       TEXT NOT NULL,             -- Fernet: the MESS JSON array
    created_at TEXT NOT NULL
);
CREATE INDEX exchange_messages_by_task ON exchange_messages (task_id, id);
-- An exchange's requests by status, newest first, without a scan: its tasks are the ones
-- pinned to it (only pinned tasks are in this index).
CREATE INDEX tasks_pinned ON tasks (assign_to, status) WHERE assign_to IS NOT NULL;
CREATE TABLE exchange_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    uuid        TEXT NOT NULL UNIQUE,     -- the log file's name: a rewrite is the same file
    exchange_id TEXT NOT NULL,
    thread_ref  TEXT,
    event_type  TEXT NOT NULL,
    at          TEXT NOT NULL,
    data        TEXT NOT NULL,            -- JSON metadata (no content, no keys)
    content     TEXT,                     -- Fernet JSON, only with exchange_log_content
    logged_at   TEXT
);
CREATE INDEX exchange_events_unlogged ON exchange_events (id) WHERE logged_at IS NULL;
