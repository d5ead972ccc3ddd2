-- Every load, every rejected line, and how far each file has been loaded into each table.
-- pg_ingest writes these in the same transaction as the rows it loads, so they can never
-- disagree with the tables: a load that fails or is rolled back leaves no trace here either.
-- Rows are written by pg_ingest on the loader's behalf; users read them.

CREATE TABLE ingest.loads (
    load_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file          text NOT NULL,
    target        text NOT NULL,
    target_oid    oid NOT NULL,
    -- the role that loaded (its OID: a role renamed keeps its rows, one dropped leaves them to no one)
    loaded_by     regrole NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    -- 'range': one writer's part of a multi-writer load (see parent_load_id); 'copy': COPY … (FORMAT jsonl);
    -- 'read': read_jsonl(…, on_error => 'skip') (its rows went to the query, rows_inserted counts them)
    status        text NOT NULL CHECK (status IN ('running', 'loaded', 'appended', 'resumed', 'unchanged', 'range', 'copy', 'read')),
    on_error      text NOT NULL,
    start_offset  bigint NOT NULL DEFAULT 0,
    lines         bigint,
    rows_inserted bigint,
    rows_rejected bigint,
    lines_skipped bigint,
    -- on_conflict loads: lines whose row met an existing one ('nothing': among lines_skipped;
    -- 'update': among rows_inserted, as updates)
    rows_conflicting bigint,
    bytes         bigint,
    seconds       double precision,
    first_error   text,
    -- for a 'range' load: the multi-writer load it is part of (which may not have committed)
    parent_load_id bigint
);
CREATE INDEX ON ingest.loads (parent_load_id) WHERE parent_load_id IS NOT NULL;
COMMENT ON TABLE ingest.loads IS 'pg_ingest: every committed load';

CREATE TABLE ingest.rejects (
    load_id     bigint NOT NULL REFERENCES ingest.loads ON DELETE CASCADE,
    file        text NOT NULL,
    line        bigint NOT NULL,
    byte_offset bigint NOT NULL,
    column_name text,
    sqlstate    text NOT NULL,
    message     text NOT NULL,
    detail      text,
    raw_line    text,
    -- a line holds one value, but json input (format => 'json') can hold several values on one
    -- line, each rejected on its own: told apart by where they start
    PRIMARY KEY (load_id, line, byte_offset)
);
COMMENT ON TABLE ingest.rejects IS 'pg_ingest: lines left out by on_error => skip, with why';

-- One row per file and table. A file is what the OS says it is (device and inode): one entry
-- whatever path reaches it (symbolic links, "//", "..", a rename such as a log rotation);
-- path is the resolved path it was last loaded from.
CREATE TABLE ingest.files (
    target_oid       oid NOT NULL,
    path             text NOT NULL,
    target           text NOT NULL,
    byte_offset      bigint NOT NULL,
    lines            bigint NOT NULL,
    size             bigint NOT NULL,
    mtime            timestamptz,
    device           bigint NOT NULL,
    inode            bigint NOT NULL,
    -- the first bytes of the file, and the bytes just before byte_offset: a file rewritten in
    -- place, or replaced by one with the same start, is not taken for an appended one
    head_bytes       integer NOT NULL,
    head_fingerprint text NOT NULL,
    tail_bytes       integer NOT NULL DEFAULT 0,
    tail_fingerprint text NOT NULL DEFAULT '',
    load_id          bigint NOT NULL,
    loaded_at        timestamptz NOT NULL,
    -- the role whose load made the entry: only a role with its privileges moves it
    loaded_by        regrole NOT NULL,
    PRIMARY KEY (target_oid, device, inode)
);
CREATE INDEX ON ingest.files (target_oid, path);
COMMENT ON TABLE ingest.files IS 'pg_ingest: how far each file has been loaded into each table';

-- Ranges of a file committed by the writers of a multi-writer load (writers => N), beyond
-- what ingest.files records. A load that completes folds them into ingest.files; a failed one
-- leaves them, and the next call loads only the gaps between them.
CREATE TABLE ingest.file_ranges (
    target_oid       oid NOT NULL,
    path             text NOT NULL,
    range_start      bigint NOT NULL,
    range_end        bigint NOT NULL,
    first_line       bigint NOT NULL,
    lines            bigint NOT NULL,
    device           bigint NOT NULL,
    inode            bigint NOT NULL,
    head_bytes       integer NOT NULL,
    head_fingerprint text NOT NULL,
    load_id          bigint NOT NULL,
    parent_load_id   bigint NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    loaded_by        regrole NOT NULL,
    -- keyed by the load too: a leader that forgets earlier ranges (force, a replaced file) in
    -- its open transaction never makes its own writers wait on those rows
    PRIMARY KEY (target_oid, device, inode, parent_load_id, range_start)
);
COMMENT ON TABLE ingest.file_ranges IS 'pg_ingest: ranges of files committed by multi-writer loads';

-- One row per client file, table and role: files that `pg-ingest load` streams from the machine it
-- runs on (COPY … FROM STDIN with the LEDGER option). Known by the client host and the
-- file's resolved path there; device, inode and the fingerprints tell the client whether it
-- is still the file that was loaded, grown, or another one.
CREATE TABLE ingest.client_files (
    target_oid       oid NOT NULL,
    source           text NOT NULL,
    target           text NOT NULL,
    byte_offset      bigint NOT NULL,
    lines            bigint NOT NULL,
    size             bigint NOT NULL,
    device           bigint NOT NULL,
    inode            bigint NOT NULL,
    head_fingerprint text NOT NULL,
    tail_fingerprint text NOT NULL DEFAULT '',
    load_id          bigint NOT NULL,
    loaded_at        timestamptz NOT NULL,
    -- a client file is what its client says it is: each role has entries of its own, and a
    -- load trusts only its own role's
    loaded_by        regrole NOT NULL,
    PRIMARY KEY (target_oid, source, loaded_by)
);
COMMENT ON TABLE ingest.client_files IS 'pg_ingest: how far each client file (host:path) has been loaded into each table';

-- Who sees what: a role sees the loads, rejects and ledger entries of tables it may SELECT, or
-- that a role whose privileges it has made; pg_read_all_stats (and pg_monitor) and superusers
-- see all. Rejected lines are where personal data and secrets end up. Row-level security: the
-- extension's owner, who writes these tables on loaders' behalf, is not subject to it.
CREATE FUNCTION ingest.visible(target_oid oid, loaded_by regrole) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT pg_catalog.pg_has_role('pg_read_all_stats'::pg_catalog.name, 'USAGE'::pg_catalog.text)
      OR coalesce(pg_catalog.has_table_privilege(target_oid, 'SELECT'::pg_catalog.text), false)
      OR pg_catalog.pg_has_role(loaded_by::pg_catalog.oid, 'USAGE'::pg_catalog.text)
$$;
COMMENT ON FUNCTION ingest.visible(oid, regrole) IS 'pg_ingest: whether the current user may see a ledger row of this table made by this role';

ALTER TABLE ingest.loads ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingest.rejects ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingest.files ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingest.file_ranges ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingest.client_files ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ingest.loads FOR SELECT USING (ingest.visible(target_oid, loaded_by));
-- a rejected line is seen with its load
CREATE POLICY visible ON ingest.rejects FOR SELECT
    USING (EXISTS (SELECT FROM ingest.loads l WHERE l.load_id OPERATOR(pg_catalog.=) rejects.load_id));
CREATE POLICY visible ON ingest.files FOR SELECT USING (ingest.visible(target_oid, loaded_by));
CREATE POLICY visible ON ingest.file_ranges FOR SELECT USING (ingest.visible(target_oid, loaded_by));
CREATE POLICY visible ON ingest.client_files FOR SELECT USING (ingest.visible(target_oid, loaded_by));

GRANT SELECT ON ingest.loads, ingest.rejects, ingest.files, ingest.file_ranges, ingest.client_files TO PUBLIC;
