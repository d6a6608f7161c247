-- The counts a new task adds (issue 15): the confidence and holder statements run only
-- when the task has one. Most tasks are created queued, with neither, and the function
-- ran both on every create only to insert nothing.
CREATE OR REPLACE FUNCTION task_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_day_counts AS c (day, created, done, failed)
        VALUES (substr(NEW.created_at, 1, 10), 1,
                (NEW.status = 'done')::integer, (NEW.status = 'failed')::integer)
        ON CONFLICT (day) DO UPDATE SET created = c.created + 1,
            done = c.done + (NEW.status = 'done')::integer,
            failed = c.failed + (NEW.status = 'failed')::integer;
    INSERT INTO task_status_counts AS c (status, tasks) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET tasks = c.tasks + 1;
    IF NEW.confidence IS NOT NULL THEN
        INSERT INTO confidence_counts AS c (bucket, status, tasks, total)
            VALUES (LEAST(trunc(NEW.confidence * 10), 9)::integer, NEW.status, 1, NEW.confidence)
            ON CONFLICT (bucket, status) DO UPDATE SET tasks = c.tasks + 1,
                total = c.total + NEW.confidence;
    END IF;
    IF NEW.assigned_to IS NOT NULL THEN
        INSERT INTO agent_task_counts AS c (agent_id, total, assigned, running, done, failed, cost_usd)
            VALUES (NEW.assigned_to, 1, (NEW.status = 'assigned')::integer,
                    (NEW.status = 'running')::integer, (NEW.status = 'done')::integer,
                    (NEW.status = 'failed')::integer, COALESCE(NEW.cost_usd, 0))
            ON CONFLICT (agent_id) DO UPDATE SET total = c.total + 1,
                assigned = c.assigned + (NEW.status = 'assigned')::integer,
                running = c.running + (NEW.status = 'running')::integer,
                done = c.done + (NEW.status = 'done')::integer,
                failed = c.failed + (NEW.status = 'failed')::integer,
                cost_usd = c.cost_usd + COALESCE(NEW.cost_usd, 0);
    END IF;
    RETURN NULL;
END
$$;
