-- Background loads (ingest_jsonl_async): one row per job, written by pg_ingest as the
-- extension's owner. Users read ingest.jobs, which also tells a job that a server restart or
-- a killed worker ended from one still running.
CREATE TABLE ingest.job_records (
    job_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state          text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    submitted_by   regrole NOT NULL,
    search_path    text NOT NULL,
    path           text NOT NULL,
    target         text,
    columns        jsonb,
    threads        integer,
    rest           text,
    epoch_unit     text NOT NULL,
    on_error       text NOT NULL,
    max_errors     bigint,
    force          boolean NOT NULL,
    writers        integer NOT NULL DEFAULT 1,
    submitted_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at     timestamptz,
    finished_at    timestamptz,
    pid            integer,
    -- the server's start time when the job was last queued or started: a job still queued or
    -- running under an earlier start was ended by a restart
    server_started timestamptz NOT NULL DEFAULT pg_catalog.pg_postmaster_start_time(),
    results        jsonb,
    error          text,
    sqlstate       text,
    -- the submitter's settings that input functions read (TimeZone, DateStyle, …) and
    -- pg_ingest's own: the job reads values as the submitter would (since 0.3.0)
    settings       jsonb
);
COMMENT ON TABLE ingest.job_records IS 'pg_ingest: background load jobs as recorded (read ingest.jobs)';

-- A role sees the jobs a role whose privileges it has submitted; pg_read_all_stats and superusers
-- see all (the view runs as its reader, so the policy applies).
ALTER TABLE ingest.job_records ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ingest.job_records FOR SELECT
    USING (ingest.visible(0::pg_catalog.oid, submitted_by));

CREATE VIEW ingest.jobs WITH (security_invoker = true) AS
SELECT j.job_id,
       s.state,
       j.submitted_by,
       j.path,
       j.target,
       j.on_error,
       j.submitted_at,
       j.started_at,
       j.finished_at,
       j.pid,
       p.percent,
       p.bytes_done,
       p.bytes_total,
       p.rows AS rows_so_far,
       (SELECT count(*) FROM jsonb_array_elements(j.results)) AS files,
       (SELECT sum((r->>'lines')::bigint)::bigint FROM jsonb_array_elements(j.results) r) AS lines,
       (SELECT sum((r->>'rows_inserted')::bigint)::bigint FROM jsonb_array_elements(j.results) r) AS rows_inserted,
       (SELECT sum((r->>'rows_rejected')::bigint)::bigint FROM jsonb_array_elements(j.results) r) AS rows_rejected,
       s.error,
       s.sqlstate,
       j.results
  FROM ingest.job_records j
 CROSS JOIN LATERAL (
       SELECT j.state IN ('queued', 'running')
                AND j.server_started IS DISTINCT FROM pg_catalog.pg_postmaster_start_time() AS restarted,
              -- the worker is started (and its pid recorded) when the job is submitted: a queued
              -- or running job whose worker is gone will never finish
              j.state IN ('queued', 'running') AND NOT ingest.job_worker_alive(j.pid) AS orphaned) o
 CROSS JOIN LATERAL (
       SELECT CASE WHEN o.restarted OR o.orphaned THEN 'failed' ELSE j.state END AS state,
              CASE
                WHEN o.restarted
                  THEN 'the server restarted while the job was ' || j.state
                       || '; run it again: the ledger loads only what is not loaded yet'
                WHEN o.orphaned AND j.state = 'queued'
                  THEN 'the job''s worker (PID ' || coalesce(j.pid::text, '?') || ') ended before the job started '
                       || '(terminated?); run it again'
                WHEN o.orphaned
                  THEN 'the job''s worker (PID ' || j.pid || ') ended without finishing (terminated?); '
                       || 'run it again: the ledger loads only what is not loaded yet'
                ELSE j.error
              END AS error,
              CASE WHEN o.restarted OR o.orphaned THEN '57P01'  -- admin_shutdown: what ended it
                   ELSE j.sqlstate
              END AS sqlstate) s
  LEFT JOIN ingest.progress p ON p.pid = j.pid AND j.state = 'running';
COMMENT ON VIEW ingest.jobs IS 'pg_ingest: background loads, their state, progress and results';

GRANT SELECT ON ingest.job_records, ingest.jobs TO PUBLIC;
