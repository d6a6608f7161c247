-- A queued task has no holder yet: its NULL entry in tasks_holder was written on every
-- create and never read (issue 15). The index now holds only tasks that have a holder;
-- every query that uses it compares assigned_to, which implies IS NOT NULL.
DROP INDEX tasks_holder;
CREATE INDEX tasks_holder ON tasks (assigned_to, status, id) WHERE assigned_to IS NOT NULL;
