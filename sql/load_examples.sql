-- Loading JSON lines with ingest_jsonl. Paths are on the server; the server's OS user reads them.

-- The sample chat log (pg-ingest sample --lines 100000 --output /data/chat_messages.jsonl)
-- into the table of the same name (sql/chat_messages.sql):
SELECT * FROM ingest_jsonl('/data/chat_messages.jsonl');

-- Into a named table, taking some columns from nested paths and keeping every other key:
CREATE TABLE events (id text, sent_at timestamptz, client text, first_tag text, extra jsonb);
SELECT * FROM ingest_jsonl('/data/chat_messages.jsonl', 'events',
    columns => '{"sent_at": "timestamp", "client": "meta.client", "first_tag": "meta.tags[0]"}',
    rest => 'extra');

-- Whole lines into a single jsonb column:
CREATE TABLE raw_events (doc jsonb);
SELECT * FROM ingest_jsonl('/data/chat_messages.jsonl', 'raw_events');

-- Epoch milliseconds:
SELECT * FROM ingest_jsonl('/data/clicks.jsonl', 'clicks', epoch_unit => 'ms');

-- A load is one statement in your transaction: all rows or none.
BEGIN;
SELECT * FROM ingest_jsonl('/data/day1.jsonl', 'events');
SELECT * FROM ingest_jsonl('/data/day2.jsonl', 'events');
COMMIT;

-- Leave bad lines out and see why; stop if more than 100 are bad:
SELECT * FROM ingest_jsonl('/data/events.jsonl', 'events', on_error => 'skip', max_errors => 100);
SELECT line, column_name, sqlstate, message, raw_line
FROM ingest.rejects WHERE load_id = (SELECT max(load_id) FROM ingest.loads) ORDER BY line;

-- Run it again: nothing happens (status 'unchanged'); after lines were appended, only those load
-- (status 'appended'); force => true loads the whole file again.
SELECT * FROM ingest_jsonl('/data/events.jsonl', 'events', on_error => 'skip');

-- History and progress of every file:
SELECT load_id, file, target, status, lines, rows_inserted, rows_rejected, seconds, first_error
FROM ingest.loads ORDER BY load_id DESC LIMIT 20;
SELECT target, path, byte_offset, lines, loaded_at FROM ingest.files;

-- Every file matching a glob, in name order, each through the ledger (one row per file):
SELECT * FROM ingest_jsonl('/data/in/*.jsonl', 'events');

-- In the background: returns a job id at once; the job starts when this transaction commits.
SELECT ingest_jsonl_async('/data/big.jsonl', 'events', on_error => 'skip') AS job_id;
SELECT job_id, state, percent, rows_so_far, eta, error FROM ingest.jobs ORDER BY job_id DESC;
SELECT * FROM wait_job(42, timeout => interval '10 minutes');   -- the result rows, or the job's error
SELECT cancel_job(42);                                           -- its rows roll back

-- Several writers (each range commits on its own; call again to resume a failed load):
SELECT * FROM ingest_jsonl('/data/big.jsonl', 'events', writers => 4);

-- Watch loads from another session:
SELECT pid, file, percent, rows, rejected, pg_size_pretty(bytes_per_second) || '/s' AS rate, eta
  FROM ingest.progress;
