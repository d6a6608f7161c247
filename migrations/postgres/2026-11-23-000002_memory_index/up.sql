-- Full-text search over agent memory without plaintext at rest: each memory is indexed as
-- keyed-hash word tokens (a blind index, see src/crypto/blind.rs). rowid = memories.id.
-- PostgreSQL port of SQLite's contentless FTS5 table: the tokens are kept (they are opaque
-- hashes) and `document` is their tsvector under the 'simple' configuration (no stemming,
-- no stop words), searched with `document @@ to_tsquery('simple', …)`, ranked by ts_rank.
-- No foreign key to memories, as in SQLite: the hub keeps both in step itself.
CREATE TABLE memory_index (
    rowid    integer PRIMARY KEY,
    tokens   text NOT NULL,
    document tsvector GENERATED ALWAYS AS (to_tsvector('simple', tokens)) STORED
);
CREATE INDEX memory_index_document ON memory_index USING gin (document);
