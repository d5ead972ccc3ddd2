#!/usr/bin/env bash
# The demo: a sample chat log, generated and loaded into the private cluster.
source "$(dirname "$0")/common.sh"
LINES=${DEMO_LINES:-200000}
DIR=${DEMO_DIR:-/tmp/pg_ingest_demo}
FILE=$DIR/chat_messages.jsonl
psql_q() { "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 "$@"; }

mkdir -p "$DIR"
chmod 755 "$DIR"
say "generating $LINES sample chat lines into $FILE"
pg-ingest sample --lines "$LINES" --seed 42 --output "$FILE"
chmod 644 "$FILE"
ls -lh "$FILE"; head -n 2 "$FILE"

pg-ingest ping

say "creating table chat_messages"
psql_q -q -c "DROP TABLE IF EXISTS chat_messages" -c "$(grep -o 'CREATE TABLE chat_messages.*' "$REPO/sql/chat_messages.sql")"

say "loading it: SELECT * FROM ingest_jsonl('$FILE', 'chat_messages')"
psql_q -x -c "SELECT * FROM ingest_jsonl('$FILE', 'chat_messages')"
psql_q -c "SELECT count(*) AS rows, count(meta) AS with_meta, count(*) FILTER (WHERE data = '') AS empty_data, min(\"timestamp\"), max(\"timestamp\") FROM chat_messages"
psql_q -c "SELECT id, \"from\", type, site_id, left(data, 40) AS data, \"timestamp\", meta FROM chat_messages WHERE meta IS NOT NULL ORDER BY id LIMIT 3"
