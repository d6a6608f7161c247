-- The dashboard's overview: tasks per minute over the last hour (creations and completions)
-- and the queue by capability, each read from an index instead of the whole task table.
CREATE INDEX tasks_created_at ON tasks (created_at);
CREATE INDEX tasks_completed_at ON tasks (completed_at);
CREATE INDEX tasks_status_capability ON tasks (status, required_capability);
