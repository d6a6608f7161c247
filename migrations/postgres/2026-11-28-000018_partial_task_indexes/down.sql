DROP INDEX tasks_pipeline;
CREATE INDEX tasks_pipeline ON tasks (pipeline_id);
DROP INDEX tasks_completed_at;
CREATE INDEX tasks_completed_at ON tasks (completed_at);
