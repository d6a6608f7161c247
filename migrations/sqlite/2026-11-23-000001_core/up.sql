-- The whole m3shd data model (seed 000 sections 02-14). Timestamps are ISO 8601 UTC text;
-- secrets (prompts, outputs, memory values, webhook and peer secrets) are Fernet tokens.

CREATE TABLE agents (
    agent_id        TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    machine         TEXT,
    capabilities    TEXT NOT NULL DEFAULT '[]',   -- JSON array
    excluded        TEXT NOT NULL DEFAULT '[]',   -- JSON array
    max_concurrent  INTEGER NOT NULL DEFAULT 1,
    status          TEXT NOT NULL DEFAULT 'offline',
    role            TEXT,
    soul_content    TEXT,
    config          TEXT NOT NULL DEFAULT '{}',   -- JSON object
    fcm_token       TEXT,
    last_heartbeat  TEXT,
    registered_at   TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY NOT NULL,        -- SHA-256 hex of the raw token
    agent_id    TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT,                             -- preset name, NULL for a custom list
    permissions TEXT NOT NULL,                    -- JSON array
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    revoked_at  TEXT,
    revoked_by  TEXT
);
CREATE INDEX tokens_agent ON tokens (agent_id);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE sessions (
    hash        TEXT PRIMARY KEY NOT NULL,        -- SHA-256 hex of the cookie value
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

CREATE TABLE pipelines (
    id           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name         TEXT,
    created_by   TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'running',
    created_at   TEXT NOT NULL,
    completed_at TEXT
);

CREATE TABLE templates (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name                TEXT NOT NULL,
    title               TEXT NOT NULL,
    prompt              TEXT NOT NULL,            -- Fernet
    required_capability TEXT NOT NULL DEFAULT 'research',
    assign_to           TEXT,
    priority            INTEGER NOT NULL DEFAULT 0,
    urgency             TEXT NOT NULL DEFAULT 'normal',
    model               TEXT NOT NULL DEFAULT 'auto',
    created_by          TEXT NOT NULL,
    created_at          TEXT NOT NULL
);

CREATE TABLE tasks (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    title               TEXT NOT NULL,
    prompt              TEXT NOT NULL,            -- Fernet
    required_capability TEXT NOT NULL DEFAULT 'research',
    assign_to           TEXT,                     -- pin requested by the creator
    assigned_to         TEXT,                     -- current holder
    status              TEXT NOT NULL,
    reason              TEXT,                     -- why it failed or went back to the queue
    priority            INTEGER NOT NULL DEFAULT 0,
    urgency             TEXT NOT NULL DEFAULT 'normal',
    deadline            TEXT,
    model               TEXT NOT NULL DEFAULT 'auto',
    created_by          TEXT NOT NULL,
    output              TEXT,                     -- Fernet
    pipeline_id         INTEGER REFERENCES pipelines (id),
    pipeline_index      INTEGER,
    template_id         INTEGER REFERENCES templates (id) ON DELETE SET NULL,
    source              TEXT NOT NULL DEFAULT 'api',
    hop_count           INTEGER NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0,
    lease_expires_at    TEXT,
    timeout_seconds     INTEGER,
    verified            BOOLEAN NOT NULL DEFAULT 0,   -- who and when: provenance and audit
    cost_usd            DOUBLE,
    tokens_in           INTEGER,
    tokens_out          INTEGER,
    confidence          DOUBLE,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    assigned_at         TEXT,
    started_at          TEXT,
    completed_at        TEXT
);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_assigned_to ON tasks (assigned_to);
CREATE INDEX tasks_created_by ON tasks (created_by);
CREATE INDEX tasks_pipeline ON tasks (pipeline_id);

CREATE TABLE task_dependencies (
    task_id       INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    depends_on_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, depends_on_id)
);
CREATE INDEX task_dependencies_reverse ON task_dependencies (depends_on_id);

CREATE TABLE task_stream_chunks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    task_id    INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    chunk      TEXT NOT NULL,                     -- Fernet
    agent_id   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (task_id, seq)
);

CREATE TABLE provenance (
    id         INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    task_id    INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    action     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '{}',        -- JSON, never a prompt or output
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (task_id, seq)
);

CREATE TABLE memories (
    id             INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    agent_id       TEXT NOT NULL,
    key            TEXT NOT NULL,
    value          TEXT NOT NULL,                 -- Fernet
    source_task_id INTEGER,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (agent_id, key)
);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    sender      TEXT NOT NULL,
    sender_type TEXT NOT NULL DEFAULT 'agent',
    recipient   TEXT,                             -- set for agent-to-agent messages
    channel     TEXT NOT NULL DEFAULT 'general',
    content     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX messages_channel ON messages (channel, id);

CREATE TABLE webhooks (
    name                TEXT PRIMARY KEY NOT NULL,
    secret              TEXT NOT NULL,            -- Fernet
    template_id         INTEGER REFERENCES templates (id) ON DELETE SET NULL,
    target_agent        TEXT,
    required_capability TEXT NOT NULL DEFAULT 'research',
    priority            INTEGER NOT NULL DEFAULT 0,
    created_by          TEXT NOT NULL,
    created_at          TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    webhook_name TEXT NOT NULL REFERENCES webhooks (name) ON DELETE CASCADE,
    delivery_key TEXT NOT NULL,
    task_id      INTEGER,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (webhook_name, delivery_key)
);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT                                    -- JSON, never a secret
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

CREATE TABLE peers (
    name            TEXT PRIMARY KEY NOT NULL,
    url             TEXT NOT NULL,
    token           TEXT NOT NULL,                -- Fernet
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    last_seen_at    TEXT,
    last_latency_ms INTEGER
);

CREATE TABLE escalations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    task_id     INTEGER REFERENCES tasks (id) ON DELETE SET NULL,
    agent_id    TEXT,
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open',
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    resolved_by TEXT,
    resolved_at TEXT,
    resolution  TEXT
);

CREATE TABLE reputation (
    agent_id      TEXT NOT NULL,
    capability    TEXT NOT NULL,
    successes     INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    verifications INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (agent_id, capability)
);

CREATE TABLE cost_usage (
    day        TEXT NOT NULL,                     -- YYYY-MM-DD, UTC
    agent_id   TEXT NOT NULL,
    model      TEXT NOT NULL,
    cost_usd   DOUBLE NOT NULL DEFAULT 0,
    tokens_in  INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, agent_id, model)
);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,                     -- JSON
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
