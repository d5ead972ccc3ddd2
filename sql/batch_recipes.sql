-- run_batch recipes. Each query runs in its own transaction, in a background worker, as you.

-- Many independent slow statements, four at a time; see each result as it completes:
SELECT * FROM run_batch(ARRAY[
    'REFRESH MATERIALIZED VIEW site_stats',
    'VACUUM ANALYZE chat_messages',
    'SELECT count(*) FROM chat_messages WHERE data ILIKE ''%refund%'''
], workers => 4);

-- A chunked update over a big table: one query per eighth of its rows, 4 workers, stop at the
-- first failure, no query longer than 10 minutes:
SELECT * FROM run_batch(
    (SELECT array_agg(format(
        'UPDATE chat_messages SET site_id = lower(site_id) WHERE id_num BETWEEN %s AND %s', lo, hi)
        ORDER BY chunk)
     FROM chunk_ranges('chat_messages', 'id_num', 8)),
    workers => 4, stop_on_error => true, timeout => '10 minutes');

-- Per-site aggregates, one query per site:
SELECT * FROM run_batch(
    (SELECT array_agg(format('INSERT INTO site_totals SELECT %L, count(*) FROM chat_messages WHERE site_id = %L', s, s))
     FROM (SELECT DISTINCT site_id AS s FROM chat_messages) sites),
    workers => 8);

-- Only what failed:
SELECT query_no, error, sqlstate
FROM run_batch(ARRAY['SELECT 1', 'SELECT 1/0']) WHERE status <> 'ok';
