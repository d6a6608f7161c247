DROP TABLE hub_events;
ALTER TABLE leadership DROP COLUMN address;
