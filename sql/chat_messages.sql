-- The table the sample chat log (`pg-ingest sample`) is shaped for.
CREATE TABLE chat_messages (id text PRIMARY KEY, "from" text NOT NULL, type text, site_id text NOT NULL, data text DEFAULT '', "timestamp" timestamptz NOT NULL, meta jsonb);
