-- Per-task limits (issue 17): how long a ready task may wait unclaimed before the hub
-- escalates (and whether it then fails), how long a running task may go without a stream
-- chunk or report before it counts as stuck, and what it may spend.
ALTER TABLE tasks ADD COLUMN schedule_timeout_seconds integer;
ALTER TABLE tasks ADD COLUMN fail_on_schedule_timeout boolean NOT NULL DEFAULT false;
ALTER TABLE tasks ADD COLUMN progress_timeout_seconds integer;
ALTER TABLE tasks ADD COLUMN max_cost_usd double precision;
ALTER TABLE tasks ADD COLUMN max_tokens integer;
