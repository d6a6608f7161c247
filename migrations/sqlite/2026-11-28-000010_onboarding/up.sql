-- Agent onboarding and the pull inbox (seed 002): registration tokens, device-code
-- preregistrations an owner approves, runtime and recovery credentials, the agent's
-- lifecycle state, and the consumer lease that fences an agent's writes. Every secret is
-- stored as a SHA-256 hex digest only.

-- One-time tokens (`mrt_…`) an admin issues for a new agent to start its bootstrap.
CREATE TABLE registration_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    name         TEXT,                            -- a label for the admins' list
    role         TEXT NOT NULL,                   -- the preset the new agent's credential gets
    capabilities TEXT NOT NULL DEFAULT '[]',      -- JSON array the new agent starts with
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT,
    revoked_at   TEXT
);

-- A new agent's request to join, approved or denied by an owner (RFC 8628 style).
CREATE TABLE agent_preregistrations (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    verification_hash     TEXT NOT NULL UNIQUE,
    device_hash           TEXT NOT NULL UNIQUE,
    bind_hash             TEXT NOT NULL,          -- SHA-256 of the bindSecret sent
    registration_token_id INTEGER NOT NULL REFERENCES registration_tokens (id),
    requested_name        TEXT NOT NULL,
    requested_category    TEXT,
    requested_runtime_type TEXT NOT NULL,         -- CLI | DAEMON | SDK | MCP
    requested_skills      TEXT NOT NULL DEFAULT '[]',
    status                TEXT NOT NULL,          -- pending | approved | denied | activated
    created_at            TEXT NOT NULL,
    expires_at            TEXT NOT NULL,
    decided_at            TEXT,
    decided_by            TEXT,
    agent_id              TEXT,                   -- set by finalize
    last_polled_at        TEXT,
    poll_interval         INTEGER NOT NULL
);
CREATE INDEX agent_preregistrations_status ON agent_preregistrations (status, id);

-- The seed 002 identity of an agent that joined by onboarding: its credentials (the
-- runtime credential is also a row of `tokens`, so it works on every endpoint) and the
-- descriptive fields it may change itself.
CREATE TABLE agent_credentials (
    agent_id           TEXT PRIMARY KEY NOT NULL,
    runtime_hash       TEXT NOT NULL,             -- the live `tokens` row
    recovery_hash      TEXT NOT NULL,
    credential_version INTEGER NOT NULL DEFAULT 1,
    runtime_type       TEXT NOT NULL,
    category           TEXT,
    display_name       TEXT,
    description        TEXT,
    skills             TEXT NOT NULL DEFAULT '[]',
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);

-- ACTIVE | PAUSED (no new work) | SUSPENDED | BANNED (credentials refused).
ALTER TABLE agents ADD COLUMN state TEXT NOT NULL DEFAULT 'ACTIVE';

-- The one process allowed to act for an agent that pulls its inbox.
CREATE TABLE consumer_leases (
    agent_id    TEXT PRIMARY KEY NOT NULL,
    consumer_id TEXT NOT NULL,
    opened_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
