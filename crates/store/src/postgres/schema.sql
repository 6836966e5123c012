-- Hameau's store on PostgreSQL, schema version 1 (crates/store/src/postgres.rs).
-- The tables are meant to be read by a DBA: keys and values are bytea, as Hameau wrote them.

-- The key-value space: every record of Hameau, with the version of the commit that last
-- wrote it.
CREATE TABLE entries (
    key bytea PRIMARY KEY,
    version bigint NOT NULL,
    value bytea NOT NULL
);

-- One row: the version of the last commit. Every commit, of every node, locks it from its
-- first read to its end: commits are serialized, so that a batch's expectations and
-- counters are checked against what every commit before it wrote, and versions follow
-- the order of commits.
CREATE TABLE clock (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL
);
INSERT INTO clock (version) VALUES (0);

-- Stored blobs (messages), named by the SHA-256 of their content, stored once, deleted
-- with their last reference. Their content is in blob_chunks, at `location`.
CREATE TABLE blobs (
    hash bytea PRIMARY KEY CHECK (length(hash) = 32),
    refcount bigint NOT NULL CHECK (refcount > 0),
    size bigint NOT NULL CHECK (size >= 0),
    n_chunks integer NOT NULL CHECK (n_chunks >= 0),
    location bytea NOT NULL
);

-- The content of blobs and of uploads, in chunks of store.blob_chunk_bytes.
CREATE TABLE blob_chunks (
    location bytea NOT NULL,
    idx integer NOT NULL CHECK (idx >= 0),
    data bytea NOT NULL,
    PRIMARY KEY (location, idx)
);

-- Blobs being staged in several chunks, by the store session (one per opened store, held
-- by an advisory lock) that writes them. Those of a session that ended without committing
-- them are removed by the next store that opens.
CREATE TABLE uploads (
    id bytea PRIMARY KEY CHECK (length(id) = 16),
    session integer NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_by_session ON uploads (session);
