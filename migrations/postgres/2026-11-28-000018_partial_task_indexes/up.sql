-- Most tasks are in no pipeline, and a live task has no finish time: an index entry for
-- their NULL is written on every create and never read (issue 15). Both indexes now hold
-- only tasks that have a value; every query that uses them compares the column, which
-- the planner knows implies IS NOT NULL (SQLite's and PostgreSQL's alike).
DROP INDEX tasks_pipeline;
CREATE INDEX tasks_pipeline ON tasks (pipeline_id) WHERE pipeline_id IS NOT NULL;
DROP INDEX tasks_completed_at;
CREATE INDEX tasks_completed_at ON tasks (completed_at) WHERE completed_at IS NOT NULL;
