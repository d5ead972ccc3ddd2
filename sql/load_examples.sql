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
