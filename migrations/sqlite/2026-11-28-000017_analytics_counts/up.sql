-- Analytics without a scan of the task table (issue 15): counts kept by triggers in the
-- same transaction as every task write, as agent_task_counts already is. Each is what the
-- analytics endpoints used to aggregate from the rows on every call.

-- Tasks created per day (UTC, from created_at), and how many of them are done or failed.
CREATE TABLE task_day_counts (
    day     TEXT PRIMARY KEY NOT NULL,
    created INTEGER NOT NULL DEFAULT 0,
    done    INTEGER NOT NULL DEFAULT 0,
    failed  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO task_day_counts (day, created, done, failed)
    SELECT substr(created_at, 1, 10), COUNT(*), SUM(status = 'done'), SUM(status = 'failed')
    FROM tasks GROUP BY 1;

-- Tasks per status.
CREATE TABLE task_status_counts (
    status TEXT PRIMARY KEY NOT NULL,
    tasks  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO task_status_counts (status, tasks) SELECT status, COUNT(*) FROM tasks GROUP BY status;

-- Reported confidence in tenths (0.0–0.1 … 0.9–1.0), per status: how many, and their sum.
CREATE TABLE confidence_counts (
    bucket INTEGER NOT NULL,
    status TEXT NOT NULL,
    tasks  INTEGER NOT NULL DEFAULT 0,
    total  REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, status)
);
INSERT INTO confidence_counts (bucket, status, tasks, total)
    SELECT MIN(CAST(confidence * 10 AS INTEGER), 9), status, COUNT(*), SUM(confidence)
    FROM tasks WHERE confidence IS NOT NULL GROUP BY 1, 2;

-- Per agent, beside what it holds: how many of its tasks failed, and their reported cost.
ALTER TABLE agent_task_counts ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agent_task_counts ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
UPDATE agent_task_counts SET
    failed = (SELECT COUNT(*) FROM tasks
              WHERE assigned_to = agent_task_counts.agent_id AND status = 'failed'),
    cost_usd = (SELECT COALESCE(SUM(cost_usd), 0) FROM tasks
                WHERE assigned_to = agent_task_counts.agent_id);

DROP TRIGGER agent_task_counts_insert;
DROP TRIGGER agent_task_counts_update;
DROP TRIGGER agent_task_counts_delete;

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_day_counts (day, created, done, failed)
        VALUES (substr(NEW.created_at, 1, 10), 1, NEW.status = 'done', NEW.status = 'failed')
        ON CONFLICT (day) DO UPDATE SET created = created + 1,
            done = done + (NEW.status = 'done'), failed = failed + (NEW.status = 'failed');
    INSERT INTO task_status_counts (status, tasks) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET tasks = tasks + 1;
    INSERT INTO confidence_counts (bucket, status, tasks, total)
        SELECT MIN(CAST(NEW.confidence * 10 AS INTEGER), 9), NEW.status, 1, NEW.confidence
        WHERE NEW.confidence IS NOT NULL
        ON CONFLICT (bucket, status) DO UPDATE SET tasks = tasks + 1, total = total + NEW.confidence;
    INSERT INTO agent_task_counts (agent_id, total, assigned, running, done, failed, cost_usd)
        SELECT NEW.assigned_to, 1, NEW.status = 'assigned', NEW.status = 'running',
               NEW.status = 'done', NEW.status = 'failed', COALESCE(NEW.cost_usd, 0)
        WHERE NEW.assigned_to IS NOT NULL
        ON CONFLICT (agent_id) DO UPDATE SET total = total + 1,
            assigned = assigned + (NEW.status = 'assigned'),
            running = running + (NEW.status = 'running'),
            done = done + (NEW.status = 'done'),
            failed = failed + (NEW.status = 'failed'),
            cost_usd = cost_usd + COALESCE(NEW.cost_usd, 0);
END;

CREATE TRIGGER task_counts_status AFTER UPDATE OF status ON tasks
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE task_day_counts SET
        done = done + (NEW.status = 'done') - (OLD.status = 'done'),
        failed = failed + (NEW.status = 'failed') - (OLD.status = 'failed')
    WHERE day = substr(NEW.created_at, 1, 10);
    UPDATE task_status_counts SET tasks = tasks - 1 WHERE status = OLD.status;
    INSERT INTO task_status_counts (status, tasks) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET tasks = tasks + 1;
END;

CREATE TRIGGER task_counts_confidence AFTER UPDATE OF confidence, status ON tasks
WHEN OLD.confidence IS NOT NEW.confidence OR (NEW.confidence IS NOT NULL AND OLD.status IS NOT NEW.status)
BEGIN
    UPDATE confidence_counts SET tasks = tasks - 1, total = total - OLD.confidence
    WHERE OLD.confidence IS NOT NULL
      AND bucket = MIN(CAST(OLD.confidence * 10 AS INTEGER), 9) AND status = OLD.status;
    INSERT INTO confidence_counts (bucket, status, tasks, total)
        SELECT MIN(CAST(NEW.confidence * 10 AS INTEGER), 9), NEW.status, 1, NEW.confidence
        WHERE NEW.confidence IS NOT NULL
        ON CONFLICT (bucket, status) DO UPDATE SET tasks = tasks + 1, total = total + NEW.confidence;
END;

CREATE TRIGGER agent_task_counts_update AFTER UPDATE OF assigned_to, status, cost_usd ON tasks
WHEN OLD.assigned_to IS NOT NEW.assigned_to OR OLD.status IS NOT NEW.status
    OR OLD.cost_usd IS NOT NEW.cost_usd
BEGIN
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned'),
        running = running - (OLD.status = 'running'),
        done = done - (OLD.status = 'done'),
        failed = failed - (OLD.status = 'failed'),
        cost_usd = cost_usd - COALESCE(OLD.cost_usd, 0)
    WHERE agent_id = OLD.assigned_to;
    INSERT INTO agent_task_counts (agent_id, total, assigned, running, done, failed, cost_usd)
        SELECT NEW.assigned_to, 1, NEW.status = 'assigned', NEW.status = 'running',
               NEW.status = 'done', NEW.status = 'failed', COALESCE(NEW.cost_usd, 0)
        WHERE NEW.assigned_to IS NOT NULL
        ON CONFLICT (agent_id) DO UPDATE SET total = total + 1,
            assigned = assigned + (NEW.status = 'assigned'),
            running = running + (NEW.status = 'running'),
            done = done + (NEW.status = 'done'),
            failed = failed + (NEW.status = 'failed'),
            cost_usd = cost_usd + COALESCE(NEW.cost_usd, 0);
END;

CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks
BEGIN
    UPDATE task_day_counts SET created = created - 1,
        done = done - (OLD.status = 'done'), failed = failed - (OLD.status = 'failed')
    WHERE day = substr(OLD.created_at, 1, 10);
    UPDATE task_status_counts SET tasks = tasks - 1 WHERE status = OLD.status;
    UPDATE confidence_counts SET tasks = tasks - 1, total = total - OLD.confidence
    WHERE OLD.confidence IS NOT NULL
      AND bucket = MIN(CAST(OLD.confidence * 10 AS INTEGER), 9) AND status = OLD.status;
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned'),
        running = running - (OLD.status = 'running'),
        done = done - (OLD.status = 'done'),
        failed = failed - (OLD.status = 'failed'),
        cost_usd = cost_usd - COALESCE(OLD.cost_usd, 0)
    WHERE agent_id = OLD.assigned_to;
END;
