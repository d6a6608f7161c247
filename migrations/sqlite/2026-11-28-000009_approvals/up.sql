-- Tool-call approvals (seed 001): a task's holder asks before a risky step; a person with
-- approvals:decide allows or denies it, or the hub denies it when it times out.
CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    agent_id    TEXT NOT NULL,                    -- who asked (the holder)
    tool        TEXT NOT NULL,
    input       TEXT,                             -- sealed
    reason      TEXT,
    status      TEXT NOT NULL,                    -- pending | allowed | denied
    decided_by  TEXT,
    note        TEXT,                             -- the decider's note, or `timeout`
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    decided_at  TEXT
);
CREATE INDEX approvals_task ON approvals (task_id, status);
CREATE INDEX approvals_status ON approvals (status, id);
