-- pg_ingest's own objects (ledgers, rejects, progress views) live in schema "ingest";
-- the user-facing functions live in the schema the extension is created in.
CREATE SCHEMA ingest;
COMMENT ON SCHEMA ingest IS 'pg_ingest: load history, rejects, ledgers and progress';
GRANT USAGE ON SCHEMA ingest TO PUBLIC;
