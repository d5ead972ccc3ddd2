"""The client-side peers `make bench` measures pg_ingest against: a JSON-lines file read by
DuckDB (`read_json`) or polars (`scan_ndjson`), made into the table's types, and written with
ADBC's PostgreSQL driver (`adbc_ingest`: COPY in binary format).

    peers.py duckdb|polars chat|events FILE DSN TABLE

Prints the seconds it took, from reading the file to the commit. Each set is converted as
PostgreSQL would store it (the bench checks that the rows equal ingest_jsonl's): chat lines'
epoch seconds become timestamptz, a missing `data` becomes '' (the column's DEFAULT); event
logs' ISO 8601 strings become timestamptz, amounts numeric(12,2) rounded half away from zero,
`user.id` a bigint, uuids arrow.uuid and objects arrow.json (so ADBC writes uuid and jsonb).
"""

import sys
import time

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa


def duckdb_table(kind, path):
    import duckdb

    con = duckdb.connect()
    # uuid and JSON as the arrow.uuid and arrow.json extension types
    con.execute("SET arrow_lossless_conversion = true")
    if kind == "chat":
        sql = f"""SELECT id, "from", type, site_id, coalesce(data, '') AS data,
                  to_timestamp("timestamp") AS "timestamp", meta
                  FROM read_json('{path}', format = 'newline_delimited',
                  columns = {{id: 'VARCHAR', "from": 'VARCHAR', type: 'VARCHAR', site_id: 'VARCHAR',
                              data: 'VARCHAR', "timestamp": 'BIGINT', meta: 'JSON'}})"""
    else:
        sql = f"""SELECT event_id::UUID AS event_id, ts::TIMESTAMPTZ AS ts,
                  amount::DECIMAL(12, 2) AS amount, type,
                  json_extract_string("user", '$.id')::BIGINT AS user_id, props, context
                  FROM read_json('{path}', format = 'newline_delimited',
                  columns = {{event_id: 'VARCHAR', ts: 'VARCHAR', type: 'VARCHAR', amount: 'VARCHAR',
                              "user": 'JSON', props: 'JSON', context: 'JSON'}})"""
    result = con.sql(sql).arrow()
    return result.read_all() if hasattr(result, "read_all") else result


def extension(column, typ, storage):
    return pa.ExtensionArray.from_storage(typ, column.combine_chunks().cast(storage))


def polars_table(kind, path):
    import polars as pl

    if kind == "chat":
        meta = pl.Struct({"client": pl.String, "tags": pl.List(pl.String), "reply_to": pl.String,
                          "score": pl.Float64})
        schema = {"id": pl.String, "from": pl.String, "type": pl.String, "site_id": pl.String,
                  "data": pl.String, "timestamp": pl.Int64, "meta": meta}
        frame = pl.scan_ndjson(path, schema=schema).select(
            "id", "from", "type", "site_id", pl.col("data").fill_null(""),
            pl.from_epoch("timestamp", time_unit="s").dt.replace_time_zone("UTC"),
            # a line without meta is NULL, not JSON null
            pl.when(pl.col("meta").is_null()).then(None).otherwise(pl.col("meta").struct.json_encode()).alias("meta"),
        ).collect()
        table = frame.to_arrow()
        columns = {n: table.column(n) for n in table.column_names}
        columns["meta"] = extension(columns["meta"], pa.json_(), pa.string())
    else:
        schema = {
            "event_id": pl.String, "ts": pl.String, "type": pl.String, "amount": pl.String,
            "user": pl.Struct({"id": pl.String, "country": pl.String}),
            "props": pl.Struct({"path": pl.String, "qty": pl.Int64, "price": pl.Float64,
                                "tags": pl.List(pl.String)}),
            "context": pl.Struct({"ip": pl.String, "locale": pl.String,
                                  "app": pl.Struct({"version": pl.String, "build": pl.Int64})}),
        }
        frame = pl.scan_ndjson(path, schema=schema).select(
            pl.col("event_id").str.replace_all("-", "").str.decode("hex"),
            pl.col("ts").str.to_datetime(time_unit="us", time_zone="UTC"),
            # numeric(12,2) rounds half away from zero; a plain cast would truncate
            pl.col("amount").cast(pl.Decimal(38, 10)).round(2, mode="half_away_from_zero")
            .cast(pl.Decimal(12, 2)),
            "type",
            pl.col("user").struct.field("id").cast(pl.Int64).alias("user_id"),
            pl.col("props").struct.json_encode(),
            pl.col("context").struct.json_encode(),
        ).collect()
        table = frame.to_arrow()
        columns = {n: table.column(n) for n in table.column_names}
        columns["event_id"] = extension(columns["event_id"], pa.uuid(), pa.binary(16))
        for name in ("props", "context"):
            columns[name] = extension(columns[name], pa.json_(), pa.string())
    return pa.table(columns)


def main():
    tool, kind, path, dsn, target = sys.argv[1:6]
    start = time.monotonic()
    table = (duckdb_table if tool == "duckdb" else polars_table)(kind, path)
    with adbc.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.adbc_ingest(target, table, mode="append")
        conn.commit()
    print(f"{time.monotonic() - start:.3f}")


if __name__ == "__main__":
    main()
