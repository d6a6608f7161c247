-- Where the leading hub process answers, so the others can forward writes to it.
ALTER TABLE leadership ADD COLUMN address text NOT NULL DEFAULT '';

-- The leader's recent events (the last `event_ring_size`), sealed at rest: followers
-- relay them to their event streams (told by NOTIFY m3shd_events) and every process
-- resumes a stream's Last-Event-ID from them.
CREATE TABLE hub_events (
    id       bigint PRIMARY KEY,
    name     text NOT NULL,
    audience text NOT NULL,
    data     text NOT NULL
);
