-- Per-task limits (issue 17): how long a ready task may wait unclaimed before the hub
-- escalates (and whether it then fails), how long a running task may go without a stream
-- chunk or report before it counts as stuck, and what it may spend.
ALTER TABLE tasks ADD COLUMN schedule_timeout_seconds INTEGER;
ALTER TABLE tasks ADD COLUMN fail_on_schedule_timeout BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN progress_timeout_seconds INTEGER;
ALTER TABLE tasks ADD COLUMN max_cost_usd DOUBLE;
ALTER TABLE tasks ADD COLUMN max_tokens INTEGER;
