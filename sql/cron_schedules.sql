-- Loads and batches on a schedule with pg_cron (1.4: schedules by the minute).
-- pg_cron lives in one database (cron.database_name); cron.schedule_in_database runs a job in
-- another. Jobs run as the role that scheduled them. Runs are in cron.job_run_details.

-- Every minute: the new lines of every file in /data/in into events. The ledger makes each
-- run load only what the previous ones did not: new files whole, grown files from where they
-- stopped, unchanged files not at all, an unfinished last line when it is finished.
SELECT cron.schedule_in_database('load-events', '* * * * *',
    $$SELECT * FROM ingest_jsonl('/data/in/*.jsonl', 'events', on_error => 'skip', max_errors => 1000)$$,
    'app');

-- Nightly at 03:00: the day's rollups, one query per chunk of the table (by its bigint
-- column n), 4 at a time.
SELECT cron.schedule_in_database('nightly-rollup', '0 3 * * *', $$
    SELECT * FROM run_batch(
        ARRAY(SELECT format('INSERT INTO daily_site_counts SELECT site_id, date_trunc(''day'', "timestamp"), count(*)
                               FROM events WHERE n BETWEEN %s AND %s AND "timestamp" >= now() - interval ''1 day''
                              GROUP BY 1, 2', lo, hi)
                FROM chunk_ranges('events', 'n', 8)),
        workers => 4, stop_on_error => true)
$$, 'app');

-- A big file on a schedule, in the background, with two writers (see the README on writers).
SELECT cron.schedule_in_database('load-export', '30 2 * * *',
    $$SELECT ingest_jsonl_async('/data/export/latest.jsonl', 'events', writers => 2)$$, 'app');

-- What ran, and how it went:
SELECT jobid, jobname, schedule, database, active FROM cron.job;
SELECT jobid, status, return_message, start_time, end_time
  FROM cron.job_run_details ORDER BY start_time DESC LIMIT 20;
-- What the loads did (in the database they ran in):
SELECT load_id, file, status, lines, rows_inserted, rows_rejected, started_at FROM ingest.loads
 ORDER BY load_id DESC LIMIT 20;

-- Stop a schedule:
SELECT cron.unschedule('load-events');
