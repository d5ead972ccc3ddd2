-- Running loads, one row each, from the COPY progress slot of the loading backend
-- (parameters 11-20, which COPY leaves unused; see extension/src/ingest/progress.rs).
-- Visible as pg_stat_progress_copy is: loads of your own role, or all with pg_read_all_stats.
CREATE VIEW ingest.progress AS
SELECT s.pid,
       s.param13 AS load_id,
       ingest.progress_file(s.param12, s.pid::int4, s.param13) AS file,
       s.relid::regclass AS target,
       s.param14 AS bytes_done,
       s.param15 AS bytes_total,
       CASE WHEN s.param15 > s.param20
            THEN round(100.0 * (s.param14 - s.param20) / (s.param15 - s.param20), 1)
            ELSE 100.0 END AS percent,
       s.param16 AS lines,
       s.param17 AS rows,
       s.param18 AS rejected,
       t.started,
       clock_timestamp() - t.started AS elapsed,
       r.bytes_per_second,
       CASE WHEN r.bytes_per_second > 0
            THEN make_interval(secs => round((s.param15 - s.param14)::numeric / r.bytes_per_second, 1))
       END AS eta
  FROM pg_catalog.pg_stat_get_progress_info('COPY') s
 CROSS JOIN LATERAL (SELECT timestamptz '2000-01-01 00:00:00+00' + s.param19 * interval '1 microsecond' AS started) t
 CROSS JOIN LATERAL (SELECT ((s.param14 - s.param20)
                             / NULLIF(extract(epoch FROM clock_timestamp() - t.started), 0))::bigint
                            AS bytes_per_second) r
 WHERE s.param11 = 8099558377751147380  -- "pgingest": the slot is a pg_ingest load's
   AND s.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());
COMMENT ON VIEW ingest.progress IS 'pg_ingest: loads running now, with bytes, lines, rows, rejects, rate and ETA';
GRANT SELECT ON ingest.progress TO PUBLIC;
