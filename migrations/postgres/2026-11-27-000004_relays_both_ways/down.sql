-- Back to one row per task (the onward crossing wins, as before this migration): SQLite's
-- INSERT OR REPLACE ... ORDER BY direction kept each task's greatest direction (binary
-- order, 'outbound' > 'inbound'); delete every other row of the task.
DELETE FROM relays r
USING relays o
WHERE o.task_id = r.task_id
  AND o.direction COLLATE "C" > r.direction COLLATE "C";
ALTER TABLE relays DROP CONSTRAINT relays_pkey;
ALTER TABLE relays ADD CONSTRAINT relays_pkey PRIMARY KEY (task_id);
