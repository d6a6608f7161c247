DROP INDEX tasks_status_capability;
DROP INDEX tasks_completed_at;
DROP INDEX tasks_created_at;
