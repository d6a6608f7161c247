-- Full-text search over agent memory without plaintext at rest: each memory is indexed as
-- keyed-hash word tokens (a blind index, see src/crypto/blind.rs). rowid = memories.id.
CREATE VIRTUAL TABLE memory_index USING fts5(tokens, content='', contentless_delete=1, tokenize='ascii');
