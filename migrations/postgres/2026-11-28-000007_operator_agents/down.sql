ALTER TABLE memories DROP COLUMN structured;
DROP TABLE inbox_items;
DROP INDEX messages_sender;
DROP INDEX messages_recipient;
ALTER TABLE messages DROP COLUMN sealed;
ALTER TABLE messages DROP COLUMN message_type;
DROP INDEX tasks_holder;
CREATE INDEX tasks_assigned_to ON tasks (assigned_to);
DROP TRIGGER agent_task_counts_delete ON tasks;
DROP TRIGGER agent_task_counts_update ON tasks;
DROP TRIGGER agent_task_counts_insert ON tasks;
DROP FUNCTION agent_task_counts_delete();
DROP FUNCTION agent_task_counts_update();
DROP FUNCTION agent_task_counts_insert();
DROP TABLE agent_task_counts;
-- Back to agent_id as the key, without the numeric id; soul_content is cleared, as the
-- SQLite rebuild copied NULL.
ALTER TABLE agents DROP COLUMN last_activity;
ALTER TABLE agents DROP COLUMN operator_status;
ALTER TABLE agents DROP COLUMN session_key;
UPDATE agents SET soul_content = NULL WHERE soul_content IS NOT NULL;
ALTER TABLE agents DROP CONSTRAINT agents_agent_id_key;
ALTER TABLE agents DROP CONSTRAINT agents_pkey;
ALTER TABLE agents DROP COLUMN id;
ALTER TABLE agents ADD CONSTRAINT agents_pkey PRIMARY KEY (agent_id);
