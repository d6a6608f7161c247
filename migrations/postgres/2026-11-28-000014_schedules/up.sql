-- Template schedules (issue 17): a template dispatched on a cron expression in a time
-- zone. Each occurrence is recorded with the task it made (in the dispatch's own
-- transaction) or why it was skipped; the primary key makes an occurrence happen once,
-- across restarts and across hub processes sharing the database.
-- template_schedules.template_id is always written by the hub: a plain integer key.
CREATE TABLE template_schedules (
    template_id  integer PRIMARY KEY NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    cron         text NOT NULL,
    time_zone    text NOT NULL,
    catch_up     boolean NOT NULL DEFAULT false,   -- dispatch occurrences missed while down
    paused       boolean NOT NULL DEFAULT false,
    since        text NOT NULL,                -- occurrences count from here
    updated_by   text NOT NULL,
    updated_at   text NOT NULL
);
CREATE TABLE schedule_occurrences (
    template_id   integer NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    occurrence_at text NOT NULL,
    outcome       text NOT NULL,               -- dispatched | skipped
    task_id       integer REFERENCES tasks (id) ON DELETE SET NULL,
    detail        text,
    recorded_at   text NOT NULL,
    PRIMARY KEY (template_id, occurrence_at)
);
