-- The dashboard's tasks-per-minute sparkline reads the last hour of creations and
-- completions; without these it would scan the whole task table.
CREATE INDEX tasks_created_at ON tasks (created_at);
CREATE INDEX tasks_completed_at ON tasks (completed_at);
