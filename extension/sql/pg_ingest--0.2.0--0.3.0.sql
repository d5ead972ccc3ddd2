-- pg_ingest 0.2.0 → 0.3.0, run by ALTER EXTENSION pg_ingest UPDATE.
--
-- A background job (ingest_jsonl_async) now reads values as its submitter's session would: the
-- settings input functions read (TimeZone, timezone_abbreviations, DateStyle, IntervalStyle,
-- xmloption, lc_monetary, array_nulls) and pg_ingest's own are recorded with the job and taken
-- over by its worker. Jobs recorded before the update have none and run as they did.
\echo Use "ALTER EXTENSION pg_ingest UPDATE" to load this file. \quit

ALTER TABLE ingest.job_records ADD COLUMN settings jsonb;
