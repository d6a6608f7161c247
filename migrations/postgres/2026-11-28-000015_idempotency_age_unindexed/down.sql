CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
