-- Idempotency keys (issue 17): a create that carries `Idempotency-Key` is recorded with
-- the caller, the key, the SHA-256 of its request and the answer it got (sealed: it holds
-- the prompt), in the create's own transaction. The same key again answers the recorded
-- response instead of creating anything.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,                   -- the caller and the route
    key          text NOT NULL,
    request_hash text NOT NULL,
    status       integer NOT NULL,
    response     text NOT NULL,                   -- Fernet
    created_at   text NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
