-- Operator-managed agents (seed 004) and the durable per-agent inbox.

-- Agents get a stable numeric id (never reused: AUTOINCREMENT), a sealed session key, the
-- status an operator set (NULL when none) and the last activity they reported. `status`
-- stays the liveness the hub last persisted (online | offline).
CREATE TABLE agents_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    agent_id        TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    machine         TEXT,
    capabilities    TEXT NOT NULL DEFAULT '[]',   -- JSON array
    excluded        TEXT NOT NULL DEFAULT '[]',   -- JSON array
    max_concurrent  INTEGER NOT NULL DEFAULT 1,
    status          TEXT NOT NULL DEFAULT 'offline',
    role            TEXT,
    soul_content    TEXT,                         -- sealed
    config          TEXT NOT NULL DEFAULT '{}',   -- JSON object
    fcm_token       TEXT,
    last_heartbeat  TEXT,
    registered_at   TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    session_key     TEXT,                         -- sealed
    operator_status TEXT,                         -- idle | error | offline | busy | online
    last_activity   TEXT
);
INSERT INTO agents_new (agent_id, name, machine, capabilities, excluded, max_concurrent, status,
                        role, soul_content, config, fcm_token, last_heartbeat, registered_at, updated_at)
    SELECT agent_id, name, machine, capabilities, excluded, max_concurrent, status,
           role, NULL, config, fcm_token, last_heartbeat, registered_at, updated_at
    FROM agents ORDER BY registered_at, agent_id;
DROP TABLE agents;
ALTER TABLE agents_new RENAME TO agents;

-- taskStats: how many tasks each agent holds, by status, kept by triggers in the same
-- transaction as every task write, so listing agents never scans the task table.
CREATE TABLE agent_task_counts (
    agent_id    TEXT PRIMARY KEY NOT NULL,
    total       INTEGER NOT NULL DEFAULT 0,
    assigned    INTEGER NOT NULL DEFAULT 0,
    running     INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0
);
INSERT INTO agent_task_counts (agent_id, total, assigned, running, done)
    SELECT assigned_to, COUNT(*),
           SUM(status = 'assigned'), SUM(status = 'running'), SUM(status = 'done')
    FROM tasks WHERE assigned_to IS NOT NULL GROUP BY assigned_to;

CREATE TRIGGER agent_task_counts_insert AFTER INSERT ON tasks
WHEN NEW.assigned_to IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO agent_task_counts (agent_id) VALUES (NEW.assigned_to);
    UPDATE agent_task_counts SET total = total + 1,
        assigned = assigned + (NEW.status = 'assigned'),
        running = running + (NEW.status = 'running'),
        done = done + (NEW.status = 'done')
    WHERE agent_id = NEW.assigned_to;
END;

CREATE TRIGGER agent_task_counts_update AFTER UPDATE OF assigned_to, status ON tasks
WHEN OLD.assigned_to IS NOT NEW.assigned_to OR OLD.status IS NOT NEW.status
BEGIN
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned'),
        running = running - (OLD.status = 'running'),
        done = done - (OLD.status = 'done')
    WHERE agent_id = OLD.assigned_to;
    INSERT OR IGNORE INTO agent_task_counts (agent_id)
        SELECT NEW.assigned_to WHERE NEW.assigned_to IS NOT NULL;
    UPDATE agent_task_counts SET total = total + 1,
        assigned = assigned + (NEW.status = 'assigned'),
        running = running + (NEW.status = 'running'),
        done = done + (NEW.status = 'done')
    WHERE agent_id = NEW.assigned_to;
END;

CREATE TRIGGER agent_task_counts_delete AFTER DELETE ON tasks
WHEN OLD.assigned_to IS NOT NULL
BEGIN
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned'),
        running = running - (OLD.status = 'running'),
        done = done - (OLD.status = 'done')
    WHERE agent_id = OLD.assigned_to;
END;

-- An agent's pending work, newest first, without a scan of its history.
DROP INDEX tasks_assigned_to;
CREATE INDEX tasks_holder ON tasks (assigned_to, status, id);

-- Direct messages carry a type; every message's content is sealed from now on (`sealed`
-- marks rows written before, which the hub seals at its next start).
ALTER TABLE messages ADD COLUMN message_type TEXT;
ALTER TABLE messages ADD COLUMN sealed BOOLEAN NOT NULL DEFAULT 0;
CREATE INDEX messages_recipient ON messages (recipient, id);
CREATE INDEX messages_sender ON messages (sender, id);

-- The inbox: what is addressed to one agent (a direct message, a task it now holds, a wake
-- notice, an approval decision), written in the transaction of the change that makes it.
-- `delivered_at` / `deliveries` record hand-overs and `acked_at` the agent's receipt, so a
-- pull-and-acknowledge consumer can work on the same rows.
CREATE TABLE inbox_items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    agent_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,                    -- message | task | wake | approval
    message_id  INTEGER REFERENCES messages (id),
    task_id     INTEGER REFERENCES tasks (id),
    body        TEXT,                             -- sealed JSON, for items without a row of their own
    created_at  TEXT NOT NULL,
    delivered_at TEXT,
    deliveries  INTEGER NOT NULL DEFAULT 0,
    acked_at    TEXT
);
CREATE INDEX inbox_open ON inbox_items (agent_id, kind, acked_at, id);

-- Seed 004's memory object keeps JSON values: `structured` marks a value stored as JSON text
-- (seed 000's entries are plain text).
ALTER TABLE memories ADD COLUMN structured BOOLEAN NOT NULL DEFAULT 0;
