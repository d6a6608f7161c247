-- The counts a new task adds, as three triggers (issue 15): a statement whose WHEN is false
-- is never run. Most tasks are created queued, with no holder and no confidence, and the
-- one trigger ran those two statements on every create only to insert nothing.
DROP TRIGGER task_counts_insert;

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_day_counts (day, created, done, failed)
        VALUES (substr(NEW.created_at, 1, 10), 1, NEW.status = 'done', NEW.status = 'failed')
        ON CONFLICT (day) DO UPDATE SET created = created + 1,
            done = done + (NEW.status = 'done'), failed = failed + (NEW.status = 'failed');
    INSERT INTO task_status_counts (status, tasks) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET tasks = tasks + 1;
END;

CREATE TRIGGER task_counts_insert_confidence AFTER INSERT ON tasks
WHEN NEW.confidence IS NOT NULL
BEGIN
    INSERT INTO confidence_counts (bucket, status, tasks, total)
        VALUES (MIN(CAST(NEW.confidence * 10 AS INTEGER), 9), NEW.status, 1, NEW.confidence)
        ON CONFLICT (bucket, status) DO UPDATE SET tasks = tasks + 1, total = total + NEW.confidence;
END;

CREATE TRIGGER task_counts_insert_holder AFTER INSERT ON tasks
WHEN NEW.assigned_to IS NOT NULL
BEGIN
    INSERT INTO agent_task_counts (agent_id, total, assigned, running, done, failed, cost_usd)
        VALUES (NEW.assigned_to, 1, NEW.status = 'assigned', NEW.status = 'running',
                NEW.status = 'done', NEW.status = 'failed', COALESCE(NEW.cost_usd, 0))
        ON CONFLICT (agent_id) DO UPDATE SET total = total + 1,
            assigned = assigned + (NEW.status = 'assigned'),
            running = running + (NEW.status = 'running'),
            done = done + (NEW.status = 'done'),
            failed = failed + (NEW.status = 'failed'),
            cost_usd = cost_usd + COALESCE(NEW.cost_usd, 0);
END;
