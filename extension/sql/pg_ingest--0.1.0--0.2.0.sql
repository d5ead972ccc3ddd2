-- pg_ingest 0.1.0 → 0.2.0, run by ALTER EXTENSION pg_ingest UPDATE.
--
-- 0.2.0 builds, tests and packages the extension for PostgreSQL 15, 17 and 18; its SQL objects
-- are 0.1.0's, unchanged, and every C function keeps its symbol in the new library. So this
-- update has nothing to change: the ledger (ingest.files, ingest.client_files, ingest.loads,
-- ingest.rejects, ingest.file_ranges) and the jobs stay as they are.
--
-- Every later change to the extension's SQL comes with its own update script next to this one;
-- tests/tests/packages.rs checks that an updated schema is identical to a fresh install's.
\echo Use "ALTER EXTENSION pg_ingest UPDATE" to load this file. \quit
