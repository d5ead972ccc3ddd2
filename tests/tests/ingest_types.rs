//! PostgreSQL decides: every value goes in through ingest_jsonl and through `'text'::type`
//! (what `INSERT … VALUES` does with the same text), and both must give the same value or
//! fail with the same SQLSTATE. Fast paths (integers, floats, bool, text, jsonb, timestamps)
//! and the input-function fallback are both covered.

use pg_ingest_tests::{ingest, DataDir, TestDb};
use postgres::Client;

/// What `INSERT` would do with a JSON value.
enum Expect<'a> {
    /// Same as `'<text form>'::type`: a string's text, else the JSON text.
    Insert,
    /// Same as this SQL expression cast to the type (epoch numbers, arrays, json values).
    Sql(&'a str),
}
use Expect::*;

fn text_form(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        _ => json.to_owned(),
    }
}

/// `Ok(v::text)` or `Err(sqlstate)`.
fn outcome(r: Result<Vec<postgres::Row>, postgres::Error>) -> Result<Option<String>, String> {
    match r {
        Ok(rows) => Ok(rows[0].get(0)),
        Err(e) => Err(e.as_db_error().map(|d| d.code().code().to_owned()).unwrap_or_else(|| e.to_string())),
    }
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn check(c: &mut Client, dir: &DataDir, n: usize, ty: &str, json: &str, expect: Expect) -> Option<String> {
    // a second column, so that a lone json/jsonb column does not take whole lines
    let (table, oracle) = (format!("v{n}"), format!("o{n}"));
    c.batch_execute(&format!("CREATE TABLE {table} (v {ty}, n int); CREATE TABLE {oracle} (v {ty}, n int)")).unwrap();
    let path = dir.write(&format!("{table}.jsonl"), format!("{{\"v\": {json}}}\n"));
    let got = outcome(
        ingest(c, &path, &format!("'{table}'")).and_then(|_| c.query(&format!("SELECT v::text FROM {table}"), &[])),
    );
    let value = match expect {
        Insert => literal(&text_form(json)),
        Sql(sql) => sql.to_owned(),
    };
    let want = outcome(c.query(&format!("INSERT INTO {oracle} (v) VALUES ({value}) RETURNING v::text"), &[]));
    (got != want).then(|| format!("{ty} ← {json}: ingest gave {got:?}, INSERT gives {want:?}"))
}

#[test]
fn every_type_agrees_with_its_input_function() {
    let mut db = TestDb::new("types");
    let dir = DataDir::new();
    db.client
        .batch_execute(
            "SET timezone = 'UTC'; SET datestyle = 'ISO, MDY'; \
             CREATE TYPE mood AS ENUM ('happy', 'sad'); \
             CREATE DOMAIN posint AS int CHECK (VALUE > 0); \
             CREATE DOMAIN short_text AS varchar(4);",
        )
        .unwrap();
    let cases: Vec<(&str, &str, Expect)> = vec![
        // integers: exact, range checked, and whatever int*in accepts or refuses
        ("smallint", "1", Insert),
        ("smallint", "-32768", Insert),
        ("smallint", "32768", Insert),
        ("smallint", "\"7\"", Insert),
        ("smallint", "\" 7 \"", Insert),
        ("int", "2147483647", Insert),
        ("int", "2147483648", Insert),
        ("int", "-0", Insert),
        ("int", "1.5", Insert),
        ("int", "1e2", Insert),
        ("int", "true", Insert),
        ("int", "\"abc\"", Insert),
        ("int", "\"0x1F\"", Insert),
        ("int", "\"+12\"", Insert),
        ("bigint", "505874924095815681", Insert),
        ("bigint", "-9223372036854775808", Insert),
        ("bigint", "9223372036854775808", Insert),
        ("bigint", "\"0000000000000000000000042\"", Insert),
        // numeric: the number's exact text
        ("numeric", "505874924095815681", Insert),
        ("numeric", "505874924095815681.123456789012345678", Insert),
        ("numeric", "1e-20", Insert),
        ("numeric", "1E+3", Insert),
        ("numeric", "\"NaN\"", Insert),
        ("numeric(5,2)", "123.456", Insert),
        ("numeric(5,2)", "12345.6", Insert),
        // floats
        ("real", "0.1", Insert),
        ("real", "3.4028235e38", Insert),
        ("real", "1e39", Insert),
        ("real", "1e-46", Insert),
        ("real", "1.4e-45", Insert),
        ("real", "\"NaN\"", Insert),
        ("double precision", "0.1", Insert),
        ("double precision", "1e308", Insert),
        ("double precision", "1e309", Insert),
        ("double precision", "5e-324", Insert),
        ("double precision", "1e-400", Insert),
        ("double precision", "-0.0", Insert),
        ("double precision", "0.30000000000000004", Insert),
        ("double precision", "\"-Infinity\"", Insert),
        ("double precision", "\"inf\"", Insert),
        // bool
        ("boolean", "true", Insert),
        ("boolean", "false", Insert),
        ("boolean", "\"yes\"", Insert),
        ("boolean", "\"f\"", Insert),
        ("boolean", "1", Insert),
        ("boolean", "\"maybe\"", Insert),
        // text and its kin
        ("text", r#""a \"quoted\" \\ back\tslash é 🎉""#, Insert),
        ("text", r#""\u00e9\ud83c\udf89""#, Insert),
        ("text", "42.50", Insert),
        ("text", "true", Insert),
        ("text", r#"{"a": [1, 2]}"#, Insert),
        ("varchar(3)", "\"abc\"", Insert),
        ("varchar(3)", "\"abcd\"", Insert),
        ("varchar(3)", "\"ab   \"", Insert),
        ("char(3)", "\"ab\"", Insert),
        ("char(3)", "\"abcd\"", Insert),
        ("short_text", "\"abcde\"", Insert),
        // json and jsonb take the value as it is
        ("jsonb", r#"{"b": 1, "a": [1, 2.50]}"#, Sql(r#"'{"b": 1, "a": [1, 2.50]}'::jsonb"#)),
        ("jsonb", "\"s\"", Sql("'\"s\"'::jsonb")),
        ("jsonb", "1.50", Sql("'1.50'::jsonb")),
        ("jsonb", r#""\u0000""#, Sql(r#"'"\u0000"'::jsonb"#)),
        ("json", r#"{"a":   1}"#, Sql(r#"'{"a":   1}'::json"#)),
        // timestamps: strings through the input function, numbers as Unix epoch seconds
        ("timestamptz", "\"Sun Aug 31 00:29:15 +0000 2014\"", Insert),
        ("timestamptz", "\"2014-08-31T00:29:15Z\"", Insert),
        ("timestamptz", "\"2014-08-31 02:29:15+02\"", Insert),
        ("timestamptz", "\"infinity\"", Insert),
        ("timestamptz", "\"garbage\"", Insert),
        ("timestamptz", "1542700001", Sql("to_timestamp(1542700001)")),
        ("timestamptz", "1542700001.123456", Sql("to_timestamp(1542700001.123456)")),
        ("timestamptz", "-1", Sql("to_timestamp(-1)")),
        ("timestamptz", "1e300", Sql("to_timestamp(1e300)")),
        ("timestamp", "\"2014-08-31 00:29:15\"", Insert),
        ("timestamp", "1542700001", Sql("to_timestamp(1542700001) AT TIME ZONE 'UTC'")),
        ("date", "\"2014-08-31\"", Insert),
        ("date", "\"31/08/2014\"", Insert),
        ("date", "86400", Sql("'1970-01-02'::date")),
        // everything else: the input function decides
        ("interval", "\"1 day 2 hours\"", Insert),
        ("inet", "\"192.168.0.1/24\"", Insert),
        ("inet", "\"not an address\"", Insert),
        ("uuid", "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"", Insert),
        ("uuid", "\"nope\"", Insert),
        ("mood", "\"happy\"", Insert),
        ("mood", "\"meh\"", Insert),
        ("posint", "5", Insert),
        ("posint", "-1", Insert),
        ("posint", "\"-1\"", Insert),
        // arrays: JSON arrays become PostgreSQL arrays; strings in {…} form go to array_in
        ("int[]", "[1, 2, 3]", Sql("ARRAY[1, 2, 3]")),
        ("int[]", "\"{1,2}\"", Insert),
        ("int[]", "[[1, 2], [3, 4]]", Sql("ARRAY[[1, 2], [3, 4]]")),
        ("int[]", "[1, \"x\"]", Sql("'{1,x}'::int[]")),
        ("int[]", "[]", Sql("'{}'::int[]")),
        ("text[]", r#"["a b", "c\"d", "e\\f", null, "NULL"]"#, Sql(r#"ARRAY['a b', 'c"d', 'e\f', NULL, 'NULL']"#)),
        ("jsonb[]", r#"[{"a": 1}, [2]]"#, Sql(r#"ARRAY['{"a": 1}'::jsonb, '[2]'::jsonb]"#)),
        ("numeric[]", "[505874924095815681.5, 1e-3]", Sql("ARRAY[505874924095815681.5, 0.001]")),
    ];
    let mut failures = Vec::new();
    for (n, (ty, json, expect)) in cases.into_iter().enumerate() {
        failures.extend(check(&mut db.client, &dir, n, ty, json, expect));
    }
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn text_with_nul_is_refused_naming_line_and_column() {
    let mut db = TestDb::new("nul");
    let dir = DataDir::new();
    db.client.batch_execute("CREATE TABLE n (id int, t text)").unwrap();
    let path = dir.write("n.jsonl", "{\"id\": 1, \"t\": \"ok\"}\n{\"id\": 2, \"t\": \"a\\u0000b\"}\n");
    let e = ingest(&mut db.client, &path, "'n'").unwrap_err();
    let db_err = e.as_db_error().unwrap();
    assert_eq!(db_err.code().code(), "22P05");
    assert_eq!(db_err.message(), format!("{path}: line 2, column \"t\": unsupported Unicode escape sequence"));
    assert_eq!(db_err.detail(), Some("\\u0000 cannot be converted to text."));
    // jsonb refuses it too, with PostgreSQL's own words
    db.client.batch_execute("CREATE TABLE nj (id int, t jsonb)").unwrap();
    let e = ingest(&mut db.client, &path, "'nj'").unwrap_err();
    let db_err = e.as_db_error().unwrap();
    assert_eq!(db_err.code().code(), "22P05");
    assert!(db_err.message().starts_with(&format!("{path}: line 2, column \"t\": ")), "{}", db_err.message());
}

#[test]
fn epoch_unit_picks_milliseconds_or_microseconds() {
    let mut db = TestDb::new("epoch_unit");
    let dir = DataDir::new();
    db.client.batch_execute("CREATE TABLE e (at timestamptz)").unwrap();
    let path = dir.write("e.jsonl", "{\"at\": 1542700001123}\n");
    ingest(&mut db.client, &path, "'e', epoch_unit => 'ms'").unwrap();
    let path_us = dir.write("e_us.jsonl", "{\"at\": 1542700001123456}\n");
    ingest(&mut db.client, &path_us, "'e', epoch_unit => 'us'").unwrap();
    let got: Vec<bool> = db
        .client
        .query("SELECT at IN (to_timestamp(1542700001.123), to_timestamp(1542700001.123456)) FROM e", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, vec![true, true]);
    let e = ingest(&mut db.client, &path, "'e', epoch_unit => 'days'").unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "22023");
}
