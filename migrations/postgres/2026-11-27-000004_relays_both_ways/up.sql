-- A task can cross twice: relayed here by one peer and relayed on to another. Keep one row
-- per direction, so the onward peer's result is recognised and reported back to the first.
-- (SQLite rebuilt the table; PostgreSQL swaps the primary key in place, rows unchanged.)
ALTER TABLE relays DROP CONSTRAINT relays_pkey;
ALTER TABLE relays ADD CONSTRAINT relays_pkey PRIMARY KEY (task_id, direction);
