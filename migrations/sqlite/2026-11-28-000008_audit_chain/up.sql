-- The audit log becomes a hash chain: each row's `hash` covers the previous row's hash
-- (`prev_hash`) and its own content. Rows written before are chained by the hub at start.
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;
