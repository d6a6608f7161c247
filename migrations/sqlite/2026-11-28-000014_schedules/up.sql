-- Template schedules (issue 17): a template dispatched on a cron expression in a time
-- zone. Each occurrence is recorded with the task it made (in the dispatch's own
-- transaction) or why it was skipped; the primary key makes an occurrence happen once,
-- across restarts and across hub processes sharing the database.
CREATE TABLE template_schedules (
    template_id  INTEGER PRIMARY KEY NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    cron         TEXT NOT NULL,
    time_zone    TEXT NOT NULL,
    catch_up     BOOLEAN NOT NULL DEFAULT 0,   -- dispatch occurrences missed while down
    paused       BOOLEAN NOT NULL DEFAULT 0,
    since        TEXT NOT NULL,                -- occurrences count from here
    updated_by   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE TABLE schedule_occurrences (
    template_id   INTEGER NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    occurrence_at TEXT NOT NULL,
    outcome       TEXT NOT NULL,               -- dispatched | skipped
    task_id       INTEGER REFERENCES tasks (id) ON DELETE SET NULL,
    detail        TEXT,
    recorded_at   TEXT NOT NULL,
    PRIMARY KEY (template_id, occurrence_at)
);
