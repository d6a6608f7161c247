-- Analytics without a scan of the task table (issue 15): counts kept by triggers in the
-- same transaction as every task write, as agent_task_counts already is. Each is what the
-- analytics endpoints used to aggregate from the rows on every call.
-- PostgreSQL port: a comparison counts as (x = 'y')::integer (SQLite's 0/1); SQLite's
-- MIN(CAST(c * 10 AS INTEGER), 9) is LEAST(trunc(c * 10), 9)::integer (CAST to integer
-- rounds in PostgreSQL, SQLite truncates toward zero); IS NOT is IS DISTINCT FROM.

-- Tasks created per day (UTC, from created_at), and how many of them are done or failed.
CREATE TABLE task_day_counts (
    day     text PRIMARY KEY NOT NULL,
    created integer NOT NULL DEFAULT 0,
    done    integer NOT NULL DEFAULT 0,
    failed  integer NOT NULL DEFAULT 0
);
INSERT INTO task_day_counts (day, created, done, failed)
    SELECT substr(created_at, 1, 10), COUNT(*),
           SUM((status = 'done')::integer), SUM((status = 'failed')::integer)
    FROM tasks GROUP BY 1;

-- Tasks per status.
CREATE TABLE task_status_counts (
    status text PRIMARY KEY NOT NULL,
    tasks  integer NOT NULL DEFAULT 0
);
INSERT INTO task_status_counts (status, tasks) SELECT status, COUNT(*) FROM tasks GROUP BY status;

-- Reported confidence in tenths (0.0–0.1 … 0.9–1.0), per status: how many, and their sum.
CREATE TABLE confidence_counts (
    bucket integer NOT NULL,
    status text NOT NULL,
    tasks  integer NOT NULL DEFAULT 0,
    total  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, status)
);
INSERT INTO confidence_counts (bucket, status, tasks, total)
    SELECT LEAST(trunc(confidence * 10), 9)::integer, status, COUNT(*), SUM(confidence)
    FROM tasks WHERE confidence IS NOT NULL GROUP BY 1, 2;

-- Per agent, beside what it holds: how many of its tasks failed, and their reported cost.
ALTER TABLE agent_task_counts ADD COLUMN failed integer NOT NULL DEFAULT 0;
ALTER TABLE agent_task_counts ADD COLUMN cost_usd double precision NOT NULL DEFAULT 0;
UPDATE agent_task_counts SET
    failed = (SELECT COUNT(*) FROM tasks t
              WHERE t.assigned_to = agent_task_counts.agent_id AND t.status = 'failed'),
    cost_usd = (SELECT COALESCE(SUM(t.cost_usd), 0) FROM tasks t
                WHERE t.assigned_to = agent_task_counts.agent_id);

DROP TRIGGER agent_task_counts_insert ON tasks;
DROP TRIGGER agent_task_counts_update ON tasks;
DROP TRIGGER agent_task_counts_delete ON tasks;
DROP FUNCTION agent_task_counts_insert();
DROP FUNCTION agent_task_counts_update();
DROP FUNCTION agent_task_counts_delete();

CREATE FUNCTION task_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_day_counts AS c (day, created, done, failed)
        VALUES (substr(NEW.created_at, 1, 10), 1,
                (NEW.status = 'done')::integer, (NEW.status = 'failed')::integer)
        ON CONFLICT (day) DO UPDATE SET created = c.created + 1,
            done = c.done + (NEW.status = 'done')::integer,
            failed = c.failed + (NEW.status = 'failed')::integer;
    INSERT INTO task_status_counts AS c (status, tasks) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET tasks = c.tasks + 1;
    INSERT INTO confidence_counts AS c (bucket, status, tasks, total)
        SELECT LEAST(trunc(NEW.confidence * 10), 9)::integer, NEW.status, 1, NEW.confidence
        WHERE NEW.confidence IS NOT NULL
        ON CONFLICT (bucket, status) DO UPDATE SET tasks = c.tasks + 1,
            total = c.total + NEW.confidence;
    INSERT INTO agent_task_counts AS c (agent_id, total, assigned, running, done, failed, cost_usd)
        SELECT NEW.assigned_to, 1, (NEW.status = 'assigned')::integer,
               (NEW.status = 'running')::integer, (NEW.status = 'done')::integer,
               (NEW.status = 'failed')::integer, COALESCE(NEW.cost_usd, 0)
        WHERE NEW.assigned_to IS NOT NULL
        ON CONFLICT (agent_id) DO UPDATE SET total = c.total + 1,
            assigned = c.assigned + (NEW.status = 'assigned')::integer,
            running = c.running + (NEW.status = 'running')::integer,
            done = c.done + (NEW.status = 'done')::integer,
            failed = c.failed + (NEW.status = 'failed')::integer,
            cost_usd = c.cost_usd + COALESCE(NEW.cost_usd, 0);
    RETURN NULL;
END
$$;
CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks
FOR EACH ROW EXECUTE FUNCTION task_counts_insert();

CREATE FUNCTION task_counts_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_day_counts SET
        done = done + (NEW.status = 'done')::integer - (OLD.status = 'done')::integer,
        failed = failed + (NEW.status = 'failed')::integer - (OLD.status = 'failed')::integer
    WHERE day = substr(NEW.created_at, 1, 10);
    UPDATE task_status_counts SET tasks = tasks - 1 WHERE status = OLD.status;
    INSERT INTO task_status_counts AS c (status, tasks) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET tasks = c.tasks + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_counts_status AFTER UPDATE OF status ON tasks
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION task_counts_status();

CREATE FUNCTION task_counts_confidence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE confidence_counts SET tasks = tasks - 1, total = total - OLD.confidence
    WHERE OLD.confidence IS NOT NULL
      AND bucket = LEAST(trunc(OLD.confidence * 10), 9)::integer AND status = OLD.status;
    INSERT INTO confidence_counts AS c (bucket, status, tasks, total)
        SELECT LEAST(trunc(NEW.confidence * 10), 9)::integer, NEW.status, 1, NEW.confidence
        WHERE NEW.confidence IS NOT NULL
        ON CONFLICT (bucket, status) DO UPDATE SET tasks = c.tasks + 1,
            total = c.total + NEW.confidence;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_counts_confidence AFTER UPDATE OF confidence, status ON tasks
FOR EACH ROW
WHEN (OLD.confidence IS DISTINCT FROM NEW.confidence
      OR (NEW.confidence IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status))
EXECUTE FUNCTION task_counts_confidence();

CREATE FUNCTION agent_task_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned')::integer,
        running = running - (OLD.status = 'running')::integer,
        done = done - (OLD.status = 'done')::integer,
        failed = failed - (OLD.status = 'failed')::integer,
        cost_usd = cost_usd - COALESCE(OLD.cost_usd, 0)
    WHERE agent_id = OLD.assigned_to;
    INSERT INTO agent_task_counts AS c (agent_id, total, assigned, running, done, failed, cost_usd)
        SELECT NEW.assigned_to, 1, (NEW.status = 'assigned')::integer,
               (NEW.status = 'running')::integer, (NEW.status = 'done')::integer,
               (NEW.status = 'failed')::integer, COALESCE(NEW.cost_usd, 0)
        WHERE NEW.assigned_to IS NOT NULL
        ON CONFLICT (agent_id) DO UPDATE SET total = c.total + 1,
            assigned = c.assigned + (NEW.status = 'assigned')::integer,
            running = c.running + (NEW.status = 'running')::integer,
            done = c.done + (NEW.status = 'done')::integer,
            failed = c.failed + (NEW.status = 'failed')::integer,
            cost_usd = c.cost_usd + COALESCE(NEW.cost_usd, 0);
    RETURN NULL;
END
$$;
CREATE TRIGGER agent_task_counts_update AFTER UPDATE OF assigned_to, status, cost_usd ON tasks
FOR EACH ROW
WHEN (OLD.assigned_to IS DISTINCT FROM NEW.assigned_to OR OLD.status IS DISTINCT FROM NEW.status
      OR OLD.cost_usd IS DISTINCT FROM NEW.cost_usd)
EXECUTE FUNCTION agent_task_counts_update();

CREATE FUNCTION task_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_day_counts SET created = created - 1,
        done = done - (OLD.status = 'done')::integer,
        failed = failed - (OLD.status = 'failed')::integer
    WHERE day = substr(OLD.created_at, 1, 10);
    UPDATE task_status_counts SET tasks = tasks - 1 WHERE status = OLD.status;
    UPDATE confidence_counts SET tasks = tasks - 1, total = total - OLD.confidence
    WHERE OLD.confidence IS NOT NULL
      AND bucket = LEAST(trunc(OLD.confidence * 10), 9)::integer AND status = OLD.status;
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned')::integer,
        running = running - (OLD.status = 'running')::integer,
        done = done - (OLD.status = 'done')::integer,
        failed = failed - (OLD.status = 'failed')::integer,
        cost_usd = cost_usd - COALESCE(OLD.cost_usd, 0)
    WHERE agent_id = OLD.assigned_to;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks
FOR EACH ROW EXECUTE FUNCTION task_counts_delete();
