DROP TRIGGER task_counts_insert ON tasks;
DROP TRIGGER task_counts_status ON tasks;
DROP TRIGGER task_counts_confidence ON tasks;
DROP TRIGGER agent_task_counts_update ON tasks;
DROP TRIGGER task_counts_delete ON tasks;
DROP FUNCTION task_counts_insert();
DROP FUNCTION task_counts_status();
DROP FUNCTION task_counts_confidence();
DROP FUNCTION agent_task_counts_update();
DROP FUNCTION task_counts_delete();
DROP TABLE task_day_counts;
DROP TABLE task_status_counts;
DROP TABLE confidence_counts;
ALTER TABLE agent_task_counts DROP COLUMN failed;
ALTER TABLE agent_task_counts DROP COLUMN cost_usd;

-- The triggers of 2026-11-28-000007_operator_agents again.
CREATE FUNCTION agent_task_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO agent_task_counts (agent_id) VALUES (NEW.assigned_to) ON CONFLICT DO NOTHING;
    UPDATE agent_task_counts SET total = total + 1,
        assigned = assigned + (NEW.status = 'assigned')::integer,
        running = running + (NEW.status = 'running')::integer,
        done = done + (NEW.status = 'done')::integer
    WHERE agent_id = NEW.assigned_to;
    RETURN NULL;
END
$$;
CREATE TRIGGER agent_task_counts_insert AFTER INSERT ON tasks
FOR EACH ROW WHEN (NEW.assigned_to IS NOT NULL)
EXECUTE FUNCTION agent_task_counts_insert();

CREATE FUNCTION agent_task_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned')::integer,
        running = running - (OLD.status = 'running')::integer,
        done = done - (OLD.status = 'done')::integer
    WHERE agent_id = OLD.assigned_to;
    INSERT INTO agent_task_counts (agent_id)
        SELECT NEW.assigned_to WHERE NEW.assigned_to IS NOT NULL
        ON CONFLICT DO NOTHING;
    UPDATE agent_task_counts SET total = total + 1,
        assigned = assigned + (NEW.status = 'assigned')::integer,
        running = running + (NEW.status = 'running')::integer,
        done = done + (NEW.status = 'done')::integer
    WHERE agent_id = NEW.assigned_to;
    RETURN NULL;
END
$$;
CREATE TRIGGER agent_task_counts_update AFTER UPDATE OF assigned_to, status ON tasks
FOR EACH ROW
WHEN (OLD.assigned_to IS DISTINCT FROM NEW.assigned_to OR OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION agent_task_counts_update();

CREATE FUNCTION agent_task_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agent_task_counts SET total = total - 1,
        assigned = assigned - (OLD.status = 'assigned')::integer,
        running = running - (OLD.status = 'running')::integer,
        done = done - (OLD.status = 'done')::integer
    WHERE agent_id = OLD.assigned_to;
    RETURN NULL;
END
$$;
CREATE TRIGGER agent_task_counts_delete AFTER DELETE ON tasks
FOR EACH ROW WHEN (OLD.assigned_to IS NOT NULL)
EXECUTE FUNCTION agent_task_counts_delete();
