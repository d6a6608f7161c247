DROP TRIGGER task_counts_insert;
DROP TRIGGER task_counts_status;
DROP TRIGGER task_counts_confidence;
DROP TRIGGER agent_task_counts_update;
DROP TRIGGER task_counts_delete;
DROP TABLE task_day_counts;
DROP TABLE task_status_counts;
DROP TABLE confidence_counts;
ALTER TABLE agent_task_counts DROP COLUMN failed;
ALTER TABLE agent_task_counts DROP COLUMN cost_usd;

CREATE TRIGGER agent_task_counts_insert AFTER INSERT ON tasks
WHEN NEW.assigned_to IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO agent_task_counts (agent_id) VALUES (NEW.assigned_to);
    UPDATE agent_task_counts SET total = total + 1,
        assigned = assigned + (NEW.status = 'assigned'),
        running = running + (NEW.status = 'running'),
        done = done + (NEW.status = 'done')
    WHERE agent_id = NEW.assigned_to;
END;

CREATE TRIGGER agent_task_counts_update AFTER UPDATE OF assigned_to, status ON tasks
WHEN OLD.assigned_to IS NOT NEW.assigned_to OR OLD.status IS NOT NEW.status
BEGIN
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned'),
        running = running - (OLD.status = 'running'),
        done = done - (OLD.status = 'done')
    WHERE agent_id = OLD.assigned_to;
    INSERT OR IGNORE INTO agent_task_counts (agent_id)
        SELECT NEW.assigned_to WHERE NEW.assigned_to IS NOT NULL;
    UPDATE agent_task_counts SET total = total + 1,
        assigned = assigned + (NEW.status = 'assigned'),
        running = running + (NEW.status = 'running'),
        done = done + (NEW.status = 'done')
    WHERE agent_id = NEW.assigned_to;
END;

CREATE TRIGGER agent_task_counts_delete AFTER DELETE ON tasks
WHEN OLD.assigned_to IS NOT NULL
BEGIN
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned'),
        running = running - (OLD.status = 'running'),
        done = done - (OLD.status = 'done')
    WHERE agent_id = OLD.assigned_to;
END;
