ALTER TABLE memories DROP COLUMN structured;
DROP TABLE inbox_items;
DROP INDEX messages_sender;
DROP INDEX messages_recipient;
ALTER TABLE messages DROP COLUMN sealed;
ALTER TABLE messages DROP COLUMN message_type;
DROP INDEX tasks_holder;
CREATE INDEX tasks_assigned_to ON tasks (assigned_to);
DROP TRIGGER agent_task_counts_delete;
DROP TRIGGER agent_task_counts_update;
DROP TRIGGER agent_task_counts_insert;
DROP TABLE agent_task_counts;
CREATE TABLE agents_old (
    agent_id        TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    machine         TEXT,
    capabilities    TEXT NOT NULL DEFAULT '[]',
    excluded        TEXT NOT NULL DEFAULT '[]',
    max_concurrent  INTEGER NOT NULL DEFAULT 1,
    status          TEXT NOT NULL DEFAULT 'offline',
    role            TEXT,
    soul_content    TEXT,
    config          TEXT NOT NULL DEFAULT '{}',
    fcm_token       TEXT,
    last_heartbeat  TEXT,
    registered_at   TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
INSERT INTO agents_old SELECT agent_id, name, machine, capabilities, excluded, max_concurrent, status,
    role, NULL, config, fcm_token, last_heartbeat, registered_at, updated_at FROM agents;
DROP TABLE agents;
ALTER TABLE agents_old RENAME TO agents;
