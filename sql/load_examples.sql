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
