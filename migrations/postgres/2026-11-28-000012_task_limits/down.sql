ALTER TABLE tasks DROP COLUMN max_tokens;
ALTER TABLE tasks DROP COLUMN max_cost_usd;
ALTER TABLE tasks DROP COLUMN progress_timeout_seconds;
ALTER TABLE tasks DROP COLUMN fail_on_schedule_timeout;
ALTER TABLE tasks DROP COLUMN schedule_timeout_seconds;
