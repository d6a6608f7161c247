DROP INDEX tasks_holder;
CREATE INDEX tasks_holder ON tasks (assigned_to, status, id);
