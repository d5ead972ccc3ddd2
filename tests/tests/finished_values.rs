//! Values finished on the parse threads (jsonb in PostgreSQL's on-disk format, with numerics
//! built as `numeric_in` builds them; json and text as they are) are held against PostgreSQL's
//! own input functions, value by value, for generated JSON: byte-identical datums, and
//! equality, hashing and GIN-indexed containment on the loaded rows. What the threads leave to
//! PostgreSQL (`\u0000`, numbers beyond the numeric format) gets PostgreSQL's own error; domains
//! and typmods keep their checks.

use pg_ingest_tests::{db_error, ingest, DataDir, Rng, TestDb};
use postgres::Client;

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "7",
    "-45",
    "3.14",
    "-0.001",
    "1e5",
    "1E+5",
    "2.5e-3",
    "-7E-10",
    "1.0000",
    "100000000",
    "99999.9999e4",
    "123456789012345678901234567890",
    "0.000000000000000000000000001",
    "1e300",
    "5e-324",
    "-1.5e+20",
    "10000",
    "0.5",
    "12345678.87654321",
    "9999",
    "1e-7",
    "0.0001000",
    "4e63",
    "1e255",
    "-2e-256",
];

const STRINGS: &[&str] = &[
    "",
    "a",
    "key",
    "é",
    "𝄞 music",
    "tab\\there",
    "quote \\\" and \\\\ slash \\/",
    "\\u00e9t\\u00e9",
    "\\ud834\\udd1e",
    "line\\nbreak\\r\\n",
    "\\b\\f",
    "日本語のテキスト",
    "a much longer string that goes on and on for a while, with commas, \
     and [brackets] and {braces} inside it",
];

fn string(rng: &mut Rng) -> String {
    let mut s = rng.pick(STRINGS).to_owned();
    if rng.below(4) == 0 {
        s.push_str(&rng.next().to_string());
    }
    format!("\"{s}\"")
}

fn number(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => rng.pick(NUMBERS).to_owned(),
        1 => format!("{}", rng.next() as i64 >> rng.below(60)),
        _ => format!("{}.{}e{}", rng.below(100000), rng.below(1000), rng.below(40) as i64 - 20),
    }
}

fn value(rng: &mut Rng, depth: u32) -> String {
    let kind = if depth > 5 { rng.below(4) } else { rng.below(7) };
    match kind {
        0 => rng.pick(&["null", "true", "false"]).to_owned(),
        1 => number(rng),
        2 | 3 => string(rng),
        4 => {
            // sometimes more than 32 elements: JEntries hold an offset every 32nd
            let n = if depth <= 1 && rng.below(5) == 0 { 30 + rng.below(40) } else { rng.below(5) };
            let elems: Vec<String> = (0..n).map(|_| value(rng, depth + 1)).collect();
            format!("[{}]", elems.join(", "))
        }
        _ => {
            let n = if depth <= 1 && rng.below(6) == 0 { 30 + rng.below(40) } else { rng.below(6) };
            let mut pairs: Vec<String> = (0..n)
                .map(|i| {
                    // keys of all lengths, escaped ones, and duplicates (the last one stays)
                    let key = match rng.below(5) {
                        0 => "dup".to_owned(),
                        1 => format!("k\\u00e9{i}"),
                        2 => "z".repeat(1 + rng.below(12) as usize),
                        _ => format!("key{}", rng.below(50)),
                    };
                    format!("\"{key}\": {}", value(rng, depth + 1))
                })
                .collect();
            if rng.below(3) == 0 {
                pairs.push("\"dup\": \"last\"".into());
            }
            format!("{{{}}}", pairs.join(", "))
        }
    }
}

/// A value that is not JSON null (which loads as SQL NULL, not jsonb 'null').
fn non_null(rng: &mut Rng) -> String {
    loop {
        let v = value(rng, 0);
        if v != "null" {
            return v;
        }
    }
}

fn zero(c: &mut Client, sql: &str) {
    let n: i64 = c.query_one(sql, &[]).unwrap().get(0);
    assert_eq!(n, 0, "{sql}");
}

#[test]
fn jsonb_json_and_text_built_on_the_threads_equal_postgres_input_byte_for_byte() {
    let mut db = TestDb::new("finished_values");
    let c = &mut db.client;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let lines: Vec<String> = (1..=3000)
        .map(|id| {
            let t = if rng.below(2) == 0 { string(&mut rng) } else { non_null(&mut rng) };
            format!("{{\"id\": {id}, \"j\": {}, \"js\": {}, \"t\": {t}}}", non_null(&mut rng), non_null(&mut rng))
        })
        .collect();
    let dir = DataDir::new();
    let path = dir.write("values.jsonl", lines.join("\n") + "\n");
    c.batch_execute("CREATE TABLE got (id int, j jsonb, js json, t text); CREATE TABLE lines (id int, line text)")
        .unwrap();
    let r = ingest(c, &path, "'got'").unwrap();
    assert_eq!(r.rows_inserted, 3000);
    // PostgreSQL's own input functions, on the same text
    let mut tx = c.transaction().unwrap();
    let insert = tx.prepare("INSERT INTO lines VALUES ($1, $2)").unwrap();
    for (i, l) in lines.iter().enumerate() {
        tx.execute(&insert, &[&(i as i32 + 1), l]).unwrap();
    }
    tx.commit().unwrap();
    c.batch_execute(
        "CREATE TABLE want AS SELECT id, ((line::json)->'j')::text::jsonb AS j, (line::json)->'js' AS js, \
                (line::json)->>'t' AS t FROM lines",
    )
    .unwrap();
    zero(c, "SELECT count(*) FROM want w FULL JOIN got g USING (id) WHERE g.id IS NULL OR w.id IS NULL");
    for col in ["j", "js", "t"] {
        zero(
            c,
            &format!(
                "SELECT count(*) FROM want w JOIN got g USING (id) \
                  WHERE ingest.datum_bytes(g.{col}) IS DISTINCT FROM ingest.datum_bytes(w.{col})"
            ),
        );
    }
    zero(
        c,
        "SELECT count(*) FROM want w JOIN got g USING (id) WHERE g.j <> w.j OR jsonb_hash(g.j) <> jsonb_hash(w.j) \
            OR jsonb_hash_extended(g.j, 7) <> jsonb_hash_extended(w.j, 7)",
    );
    // GIN-indexed containment finds the same rows in both
    c.batch_execute(
        "CREATE INDEX ON got USING gin (j); CREATE INDEX ON want USING gin (j); \
         CREATE INDEX ON got USING gin (j jsonb_path_ops); ANALYZE got; ANALYZE want; SET enable_seqscan = off",
    )
    .unwrap();
    let probes = c
        .query(
            "SELECT DISTINCT jsonb_build_object(k, v)::text FROM want, jsonb_each(CASE WHEN jsonb_typeof(j) = 'object' \
             THEN j END) AS e(k, v) WHERE jsonb_typeof(v) <> 'object' LIMIT 200",
            &[],
        )
        .unwrap();
    assert!(probes.len() > 50);
    for p in &probes {
        let probe: String = p.get(0);
        let n = |c: &mut Client, t: &str| -> i64 {
            c.query_one(&format!("SELECT count(*) FROM {t} WHERE j @> $1::text::jsonb"), &[&probe]).unwrap().get(0)
        };
        let (got, want) = (n(c, "got"), n(c, "want"));
        assert!(got > 0 && got == want, "{probe}: {got} rows vs {want}");
    }
}

#[test]
fn whole_lines_rest_objects_and_what_postgres_decides() {
    let mut db = TestDb::new("finished_edges");
    let c = &mut db.client;
    let dir = DataDir::new();
    let mut rng = Rng(42);
    // a lone jsonb column takes whole lines: arrays and scalars too
    let lines: Vec<String> = (0..500).map(|_| non_null(&mut rng)).collect();
    let path = dir.write("whole.jsonl", lines.join("\n") + "\n");
    c.batch_execute("CREATE TABLE whole (doc jsonb); CREATE TABLE whole_want (doc jsonb)").unwrap();
    assert_eq!(ingest(c, &path, "'whole'").unwrap().rows_inserted, 500);
    for l in &lines {
        c.execute("INSERT INTO whole_want VALUES ($1::text::jsonb)", &[l]).unwrap();
    }
    zero(
        c,
        "SELECT count(*) FROM ((SELECT ingest.datum_bytes(doc) FROM whole EXCEPT ALL \
                                SELECT ingest.datum_bytes(doc) FROM whole_want) UNION ALL \
                               (SELECT ingest.datum_bytes(doc) FROM whole_want EXCEPT ALL \
                                SELECT ingest.datum_bytes(doc) FROM whole)) d",
    );

    // the rest column: every key no column takes, as one object
    let path = dir.write("rest.jsonl", "{\"id\": 1, \"b\": [1, 2.50], \"a\": {\"x\": \"é\"}, \"b\": 3}\n");
    c.batch_execute("CREATE TABLE r (id int, more jsonb)").unwrap();
    ingest(c, &path, "'r', rest => 'more'").unwrap();
    zero(
        c,
        "SELECT count(*) FROM r WHERE ingest.datum_bytes(more) <> \
           ingest.datum_bytes('{\"b\": [1, 2.50], \"a\": {\"x\": \"é\"}, \"b\": 3}'::jsonb)",
    );

    // what the threads leave to PostgreSQL: the same error as PostgreSQL's input gives
    c.batch_execute("CREATE TABLE e (j jsonb)").unwrap();
    for bad in [r#"{"a": "x\u0000y"}"#, r#"[1e99999999999]"#, r#"{"n": 1e-999999}"#] {
        let path = dir.write("bad.jsonl", format!("{{\"j\": {bad}}}\n"));
        let e = ingest(c, &path, "'e', force => true").unwrap_err();
        let pg = c.query_one("SELECT $1::text::jsonb", &[&bad]).unwrap_err();
        let (ours, theirs) = (db_error(&e), db_error(&pg));
        assert_eq!(ours.0, theirs.0, "{bad}: {ours:?} vs {theirs:?}");
        assert!(ours.1.ends_with(&theirs.1), "{bad}: {ours:?} vs {theirs:?}");
    }

    // domains and typmods keep their own checks
    c.batch_execute(
        "CREATE DOMAIN obj AS jsonb CHECK (jsonb_typeof(VALUE) = 'object'); \
         CREATE TABLE d (j obj, v varchar(3))",
    )
    .unwrap();
    let path = dir.write("d1.jsonl", "{\"j\": [1]}\n");
    assert_eq!(db_error(&ingest(c, &path, "'d'").unwrap_err()).0, "23514");
    let path = dir.write("d2.jsonl", "{\"j\": {}, \"v\": \"toolong\"}\n");
    assert_eq!(db_error(&ingest(c, &path, "'d'").unwrap_err()).0, "22001");
    let path = dir.write("d3.jsonl", "{\"j\": {\"b\": 1, \"a\": 2}, \"v\": \"ok\"}\n");
    ingest(c, &path, "'d'").unwrap();
    zero(c, "SELECT count(*) FROM d WHERE j::jsonb <> '{\"a\": 2, \"b\": 1}'");
}
