//! The fast paths for the types event logs use (timestamptz, timestamp and date from ISO 8601
//! strings, uuid, numeric with and without a typmod, bool strings, and what they leave to
//! PostgreSQL), held against PostgreSQL's own `INSERT … VALUES` in the same session, value by
//! value: generated strings from each type's accepted grammar and its near misses, under
//! several TimeZone and DateStyle settings. A value loads exactly as PostgreSQL stores it (the
//! same datum, byte for byte where it is variable-length), or is rejected with PostgreSQL's
//! own SQLSTATE and message.

use pg_ingest_tests::{connect_as, db_error, ingest, role, CrashWitness, DataDir, Rng, TestDb};
use postgres::Client;

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// ISO 8601 strings, most of them valid, with the near misses around each field.
fn timestamps(rng: &mut Rng, n: usize) -> Vec<String> {
    let fixed = [
        // DST gaps and overlaps in the zones the test runs in
        "2024-03-10T02:30:00",
        "2024-11-03T01:30:00",
        "2024-11-03 01:30:00.5",
        "2024-03-31T02:30:00",
        "2024-10-27T02:30:00",
        "2024-04-07T01:45:00",
        "2024-10-06T02:15:00",
        "1970-01-01T00:00:00",
        "1969-12-31T23:59:59.999999",
        "2038-01-19T03:14:08Z",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59.999999+15:59",
        "9999-12-31T23:59:59.9999999",
        "2024-05-01T23:59:59.9999996",
        "2024-03-10T01:59:59.9999999",
        "2000-02-29T12:00:00",
        "1900-02-29T12:00:00",
        "2024-05-01T24:00:00",
        "2024-05-01T23:60:00",
        "2024-05-01T23:59:60",
        "2024-05-01T12:00:00 BC",
        "2024-05-01T12:00:00 America/Chicago",
        "2024-05-01T12:00:00 EST",
        "  2024-05-01T12:00:00",
        "2024-05-01T12:00:00  ",
        "20240501T120000Z",
        "2024-05-01T12:00:00.Z",
        "2024-05-01T12Z",
        "2024-05-01T1200",
        "2024-13-01",
        "2024-00-10",
        "0000-01-01",
        "10000-01-01",
        "infinity",
        "-infinity",
        "epoch",
        "May 1, 2024 12:00",
        "01/05/2024",
        "05-01-2024",
        "2024-05-01T12:00:00+16:00",
        "2024-05-01T12:00:00+15:60",
        "2024-05-01T12:00:00+05:30:15",
        "2024-05-01T12:00:00+5",
        "2024-05-01T12:00:00-0000",
        "2024-05-01T12:00:00.123456789-03",
        "",
        "2024-05-01",
        "2024-05-01T",
    ];
    let mut out: Vec<String> = fixed.iter().map(|s| quoted(s)).collect();
    while out.len() < n {
        let year = match rng.below(4) {
            0 => rng
                .pick(&["0001", "0099", "1000", "1899", "1900", "1969", "1970", "1999", "2000", "2038", "9999"])
                .to_owned(),
            _ => format!("{:04}", 1900 + rng.below(200)),
        };
        let month = if rng.below(50) == 0 { 13 } else { 1 + rng.below(12) };
        let day = if rng.below(10) == 0 { 28 + rng.below(4) } else { 1 + rng.below(28) };
        let mut s = format!("{year}-{month:02}-{day:02}");
        if rng.below(10) != 0 {
            s.push(rng.pick(&["T", "T", "T", " ", "t"]).chars().next().unwrap());
            let hour = if rng.below(60) == 0 { 24 } else { rng.below(24) };
            s.push_str(&format!("{hour:02}:{:02}", rng.below(60)));
            if rng.below(8) != 0 {
                s.push_str(&format!(":{:02}", if rng.below(80) == 0 { 60 } else { rng.below(60) }));
                if rng.below(2) == 0 {
                    let digits = 1 + rng.below(9) as usize;
                    let frac: String = (0..digits)
                        .map(|_| if rng.below(3) == 0 { '9' } else { (b'0' + rng.below(10) as u8) as char })
                        .collect();
                    s.push('.');
                    s.push_str(&frac);
                }
            }
            let hh = if rng.below(30) == 0 { 16 } else { rng.below(15) };
            let mm = rng.pick(&["00", "30", "45", "59"]);
            let sign = rng.pick(&["+", "-"]);
            match rng.below(8) {
                0 | 1 => {}
                2 => s.push('Z'),
                3 => s.push_str(&format!("{sign}{hh:02}")),
                4 => s.push_str(&format!("{sign}{hh:02}{mm}")),
                _ => s.push_str(&format!("{sign}{hh:02}:{mm}")),
            }
        }
        out.push(quoted(&s));
    }
    out
}

fn hex(rng: &mut Rng, digits: usize) -> String {
    (0..digits).map(|_| format!("{:x}", rng.below(16))).collect()
}

/// Every spelling `uuid_in` accepts, and the near misses.
fn uuids(rng: &mut Rng, n: usize) -> Vec<String> {
    let fixed = [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
        "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
        "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
        "",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "é0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
    ];
    let mut out: Vec<String> = fixed.iter().map(|s| quoted(s)).collect();
    while out.len() < n {
        let h = hex(rng, 32);
        let s = match rng.below(6) {
            0 => h.to_uppercase(),
            1 => h.clone(),
            2 => format!("{{{}-{}-{}-{}-{}}}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]),
            // a hyphen after some groups of four
            3 => h
                .as_bytes()
                .chunks(4)
                .enumerate()
                .map(|(i, c)| {
                    let c = std::str::from_utf8(c).unwrap();
                    if i < 7 && rng.below(2) == 0 {
                        format!("{c}-")
                    } else {
                        c.to_owned()
                    }
                })
                .collect(),
            4 => {
                // a hyphen somewhere uuid_in does not take it
                let at = 1 + rng.below(31) as usize;
                format!("{}-{}", &h[..at], &h[at..])
            }
            _ => format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]),
        };
        out.push(quoted(&s));
    }
    out
}

/// Numbers as JSON numbers and as strings: plain, with fractions and exponents, on and around
/// the rounding and overflow edges of numeric(12,2), numeric(5,-2) and numeric(3,5).
fn numerics(rng: &mut Rng, n: usize) -> Vec<String> {
    let fixed_numbers =
        ["0", "-0", "72754.666", "96822.8", "9999999999.994", "9999999999.995", "-9999999999.995", "1e9", "1e10"];
    let fixed_strings = [
        "72754.666",
        "96822.8",
        "9999999999.99",
        "9999999999.995",
        "0.005",
        "-0.005",
        "0.0049999",
        "12345678901234567890.5",
        "1.5e3",
        "15E-4",
        "1e-1000",
        "1e1001",
        "+1",
        " 1",
        "1 ",
        "1.",
        ".5",
        "-.5",
        ".",
        "1e",
        "1e+",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "1_000",
        "0x1F",
        "0b101",
        "",
        "--1",
        "1..2",
        "0.00499",
        "0.00999",
        "0.012",
        "0.0125",
        "12450",
        "12550",
        "99949",
        "99950",
    ];
    let mut out: Vec<String> = fixed_numbers.iter().map(|s| s.to_string()).collect();
    out.extend(fixed_strings.iter().map(|s| quoted(s)));
    while out.len() < n {
        let int = match rng.below(4) {
            0 => "0".to_owned(),
            1 => format!("{}", rng.below(100)),
            2 => format!("{}", rng.below(100_000_000_000)),
            _ => "9".repeat(1 + rng.below(12) as usize),
        };
        let mut s = if rng.below(3) == 0 { format!("-{int}") } else { int };
        if rng.below(3) != 0 {
            let digits = 1 + rng.below(6) as usize;
            let frac: String = (0..digits)
                .map(|_| if rng.below(3) == 0 { '9' } else { (b'0' + rng.below(10) as u8) as char })
                .collect();
            s = format!("{s}.{frac}");
        }
        if rng.below(6) == 0 {
            s = format!("{s}{}{}", rng.pick(&["e", "E", "e+", "e-"]), rng.below(12));
        }
        out.push(if rng.below(2) == 0 { s.clone() } else { quoted(&s) });
    }
    out
}

fn bools() -> Vec<String> {
    let mut out: Vec<String> = ["true", "false"].iter().map(|s| s.to_string()).collect();
    for s in [
        "t", "f", "true", "false", "TRUE", "False", "yes", "no", "on", "off", "1", "0", "y", "n", " t", "t ", "tr",
        "fals", "maybe", "", "o",
    ] {
        out.push(quoted(s));
    }
    out
}

/// Strings of up to seven characters of one to four UTF-8 bytes, spaces and tabs among them
/// (trailing spaces are what varchar(n) and character(n) may cut off), and a few numbers.
fn character_strings(rng: &mut Rng, n: usize) -> Vec<String> {
    let mut out = vec!["12".to_string(), "1234.5".to_string(), "true".to_string()];
    while out.len() < n {
        let len = rng.below(8);
        let s: String = (0..len).map(|_| rng.pick(&["a", "é", "日", "🎉", " ", " ", "x", "\t"])).collect();
        out.push(quoted(&s.replace("\\t", "\t")));
    }
    out
}

/// JSON arrays of up to five elements drawn from every element type's values and near misses,
/// JSON nulls among them; now and then a nested array or an object.
fn json_arrays(rng: &mut Rng, n: usize) -> Vec<String> {
    let mut pool: Vec<String> = Vec::new();
    pool.extend(numerics(rng, 60));
    pool.extend(uuids(rng, 20));
    pool.extend(timestamps(rng, 60));
    pool.extend(character_strings(rng, 30));
    pool.extend(bools());
    for extra in [
        "null",
        "null",
        "32767",
        "-32768",
        "32768",
        "2147483648",
        "9223372036854775807",
        "\"42\"",
        "-0",
        "1e3",
        "0.1",
        "3.4e38",
        "1e39",
        "\"NULL\"",
        "\"a,b\"",
        "\"{x}\"",
        "\"q\\\"uote\"",
        "\"\\\\\"",
        "{\"k\": [1]}",
        "[1, 2]",
        "[]",
        "\"2024-02-29\"",
        "\"1999-12-31T23:59:59.9999995Z\"",
        "\"2024-03-10 02:30\"",
        "\"0001-01-01\"",
    ] {
        pool.push(extra.to_string());
    }
    let mut out = vec!["[]".to_string(), "[null]".to_string()];
    while out.len() < n {
        let len = rng.below(6) as usize;
        // mostly one kind per array, so that whole arrays load
        let start = rng.below(pool.len() as u64) as usize;
        let items: Vec<&str> = (0..len)
            .map(|_| {
                if rng.below(4) == 0 {
                    pool[rng.below(pool.len() as u64) as usize].as_str()
                } else {
                    pool[(start + rng.below(8) as usize) % pool.len()].as_str()
                }
            })
            .collect();
        out.push(format!("[{}]", items.join(", ")));
    }
    out
}

/// The text an input function gets for a JSON value: a string's text, else the value's own.
fn input_text(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json).unwrap() {
        serde_json::Value::String(s) => s,
        _ => json.to_owned(),
    }
}

/// Loads `values` into a column of type `sql_type` and inserts the same texts with
/// `INSERT … VALUES` in the same session; both must agree on every value. Returns how many
/// values loaded (the rest were refused, by both alike).
fn differential(c: &mut Client, dir: &DataDir, sql_type: &str, values: &[String]) -> usize {
    let texts: Vec<String> = values.iter().map(|v| input_text(v)).collect();
    differential_texts(c, dir, sql_type, values, &texts, true)
}

/// [`differential`], with the texts `INSERT … VALUES` gets given; `same_errors`: refused values
/// must also get the same SQLSTATE and message.
fn differential_texts(
    c: &mut Client,
    dir: &DataDir,
    sql_type: &str,
    values: &[String],
    texts: &[String],
    same_errors: bool,
) -> usize {
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS got, want, want_err; \
         CREATE TABLE got (id int, v {sql_type}); CREATE TABLE want (id int, v {sql_type}); \
         CREATE TABLE want_err (id int, sqlstate text, message text)"
    ))
    .unwrap();
    let lines: Vec<String> =
        values.iter().enumerate().map(|(i, v)| format!("{{\"id\": {}, \"v\": {v}}}", i + 1)).collect();
    let path = dir.write("values.jsonl", lines.join("\n") + "\n");
    let r = ingest(c, &path, "'got', on_error => 'skip', force => true").unwrap();
    let ids: Vec<i32> = (1..=values.len() as i32).collect();
    c.batch_execute(
        "CREATE OR REPLACE FUNCTION pg_temp.insert_values(ids int[], texts text[]) RETURNS void LANGUAGE plpgsql AS $f$ \
         BEGIN FOR i IN 1 .. array_length(ids, 1) LOOP \
           BEGIN EXECUTE format('INSERT INTO want VALUES (%s, %L)', ids[i], texts[i]); \
           EXCEPTION WHEN others THEN INSERT INTO want_err VALUES (ids[i], SQLSTATE, SQLERRM); END; \
         END LOOP; END $f$",
    )
    .unwrap();
    c.execute("SELECT pg_temp.insert_values($1, $2)", &[&ids, &texts]).unwrap();
    let describe = |id: i32| format!("value {} ({sql_type})", values[id as usize - 1]);
    // the same values refused
    let only: Vec<(i32, String)> = c
        .query(
            "(SELECT id, 'loaded, refused by INSERT: ' || coalesce(e.sqlstate || ' ' || e.message, '?') \
               FROM got JOIN want_err e USING (id)) \
             UNION ALL (SELECT id, 'refused (' || r.sqlstate || ' ' || r.message || '), inserted by INSERT' \
               FROM want JOIN ingest.rejects r ON r.load_id = $1 AND r.line = want.id) \
             UNION ALL (SELECT id, 'neither loaded nor refused' FROM want_err \
               WHERE id NOT IN (SELECT id FROM got) AND id NOT IN (SELECT line FROM ingest.rejects WHERE load_id = $1)) \
             ORDER BY 1",
            &[&r.load_id],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(
        only.is_empty(),
        "{}",
        only.iter().map(|(id, why)| format!("{}: {why}", describe(*id))).collect::<Vec<_>>().join("\n")
    );
    // with the same error
    let errors: Vec<(i32, String, String, String, String)> = c
        .query(
            "SELECT e.id, e.sqlstate, r.sqlstate, e.message, r.message FROM want_err e \
               JOIN ingest.rejects r ON r.load_id = $1 AND r.line = e.id \
              WHERE (e.sqlstate <> r.sqlstate OR e.message <> r.message) AND $2 ORDER BY 1",
            &[&r.load_id, &same_errors],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
        .collect();
    assert!(
        errors.is_empty(),
        "{}",
        errors
            .iter()
            .map(|(id, ws, gs, wm, gm)| format!("{}: INSERT: {ws} {wm}; load: {gs} {gm}", describe(*id)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // and the same datums
    let varlena: bool =
        c.query_one(&format!("SELECT typlen = -1 FROM pg_type WHERE oid = '{sql_type}'::regtype"), &[]).unwrap().get(0);
    let bytes = if varlena { " OR ingest.datum_bytes(g.v) IS DISTINCT FROM ingest.datum_bytes(w.v)" } else { "" };
    let differ: Vec<(i32, Option<String>, Option<String>)> = c
        .query(
            &format!(
                "SELECT id, g.v::text, w.v::text FROM got g JOIN want w USING (id) \
                  WHERE g.v IS DISTINCT FROM w.v OR g.v::text IS DISTINCT FROM w.v::text{bytes} ORDER BY 1"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert!(
        differ.is_empty(),
        "{}",
        differ
            .iter()
            .map(|(id, g, w)| format!("{}: loaded {g:?}, INSERT stored {w:?}", describe(*id)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    c.query_one("SELECT count(*) FROM got", &[]).unwrap().get::<_, i64>(0) as usize
}

#[test]
fn timestamps_and_dates_agree_with_postgres_in_every_time_zone_and_date_style() {
    let mut db = TestDb::new("fast_temporal");
    let c = &mut db.client;
    let dir = DataDir::new();
    let values = timestamps(&mut Rng(0x7157_A3B1), 1500);
    let zones = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu", "<+03>-03"];
    for (i, zone) in zones.iter().enumerate() {
        let style = ["ISO, MDY", "SQL, DMY", "German", "Postgres, YMD"][i % 4];
        c.batch_execute(&format!("SET TimeZone = '{zone}'; SET DateStyle = '{style}'")).unwrap();
        for sql_type in ["timestamptz", "timestamp", "date", "timestamptz(3)", "timestamp(0)"] {
            let loaded = differential(c, &dir, sql_type, &values);
            assert!(loaded > values.len() / 2, "{sql_type} in {zone}: only {loaded} loaded");
        }
    }
}

#[test]
fn uuids_numerics_and_bools_agree_with_postgres() {
    let mut db = TestDb::new("fast_scalars");
    let c = &mut db.client;
    let dir = DataDir::new();
    let mut rng = Rng(0x00C0_FFEE);
    let uuids = uuids(&mut rng, 800);
    assert!(differential(c, &dir, "uuid", &uuids) > 400);
    c.batch_execute("CREATE DOMAIN nonzero_uuid AS uuid CHECK (VALUE <> '00000000-0000-0000-0000-000000000000')")
        .unwrap();
    assert!(differential(c, &dir, "nonzero_uuid", &uuids) > 400);
    let numerics = numerics(&mut rng, 1500);
    for sql_type in ["numeric", "numeric(12,2)", "numeric(5,-2)", "numeric(3,5)", "numeric(1000,500)"] {
        assert!(differential(c, &dir, sql_type, &numerics) > 10, "{sql_type}");
    }
    c.batch_execute("CREATE DOMAIN amount AS numeric(12,2) CHECK (VALUE >= 0)").unwrap();
    differential(c, &dir, "amount", &numerics);
    for sql_type in ["bool", "int4", "int8", "float8", "varchar(5)", "char(3)"] {
        differential(c, &dir, sql_type, &bools());
        differential(c, &dir, sql_type, &numerics[..200]);
    }
}

#[test]
fn varchar_and_character_lengths_agree_with_postgres() {
    let mut db = TestDb::new("fast_chars");
    let c = &mut db.client;
    let dir = DataDir::new();
    let values = character_strings(&mut Rng(0x0C4A_25EE), 600);
    c.batch_execute("CREATE DOMAIN short_name AS varchar(3) CHECK (VALUE <> 'x')").unwrap();
    for sql_type in ["varchar(3)", "varchar(1)", "char(3)", "char", "character(5)", "bpchar", "varchar", "short_name"] {
        let loaded = differential(c, &dir, sql_type, &values);
        assert!(loaded > values.len() / 4, "{sql_type}: only {loaded} loaded");
    }
}

/// Arrays built on the parse threads are the ones `array_in` makes from the literal pg_ingest
/// would give it (what it gave before, and still gives where a fast path stops), byte for byte.
#[test]
fn arrays_agree_with_array_in() {
    let mut db = TestDb::new("fast_arrays");
    let c = &mut db.client;
    let dir = DataDir::new();
    let values = json_arrays(&mut Rng(0x00A2_2A75), 700);
    let literals: Vec<String> = values
        .iter()
        .map(|v| {
            let parsed = pg_ingest_core::json::parse_value(v.as_bytes()).unwrap();
            let mut literal = Vec::new();
            pg_ingest_core::convert::array_literal(&parsed, false, &mut literal).unwrap();
            String::from_utf8(literal).unwrap()
        })
        .collect();
    c.batch_execute("CREATE DOMAIN positive AS int CHECK (VALUE > 0); CREATE DOMAIN ints AS int[]").unwrap();
    for sql_type in [
        "int2[]",
        "int4[]",
        "int8[]",
        "float4[]",
        "float8[]",
        "bool[]",
        "text[]",
        "varchar[]",
        "varchar(3)[]",
        "uuid[]",
        "numeric[]",
        "numeric(6,2)[]",
        "date[]",
        "timestamp[]",
        "timestamptz[]",
        "timestamptz(0)[]",
        "positive[]",
        "ints",
    ] {
        // COPY gives array_in the typmod, which each element's input applies in turn; INSERT
        // reads the whole array without it, then applies it: where an array has two bad
        // elements (one too big for the typmod, one no number at all), each reports another
        let same_errors = !sql_type.contains('(');
        // with array_nulls off, array_in reads the literal's NULL as the text "NULL"
        for settings in ["SET TimeZone = 'UTC'", "SET TimeZone = 'America/New_York'", "SET array_nulls = off"] {
            c.batch_execute(settings).unwrap();
            let loaded = differential_texts(c, &dir, sql_type, &values, &literals, same_errors);
            assert!(loaded > 20, "{sql_type}, {settings}: only {loaded} loaded");
        }
        c.batch_execute("RESET array_nulls").unwrap();
    }
}

/// What an attacker of the fast paths found, held: exponents that wrapped (a server crash from
/// any role), exponents with two signs, NULLs that skipped a domain's NOT NULL, json nested
/// deeper than json_in takes.
#[test]
fn hostile_numbers_nulls_in_domains_and_deep_json_get_postgres_own_answer() {
    let mut db = TestDb::new("fast_attacks");
    let dir = DataDir::new();
    let mut witness = CrashWitness::new(&db.name);
    role(&mut db.client, "fast_attacker", "LOGIN");
    let mut attacker = connect_as(&db.name, "fast_attacker");
    for (sql_type, value) in [
        ("numeric(3,-1)", "\".5e-9223372036854775808\""),
        ("numeric(5,-2)", "1e-9223372036854775808"),
        ("numeric(10,2)", "1e-9223372036854775808"),
        ("numeric(10,2)", "1e9223372036854775807"),
        ("numeric", "\"1e++5\""),
        ("numeric(10,2)", "\"1e+-5\""),
    ] {
        attacker.batch_execute(&format!("DROP TABLE IF EXISTS pg_temp.x; CREATE TEMP TABLE x (v {sql_type})")).unwrap();
        let mut w = attacker.copy_in("COPY x FROM STDIN (FORMAT jsonl)").unwrap();
        std::io::Write::write_all(&mut w, format!("{{\"v\": {value}}}\n").as_bytes()).unwrap();
        let ours = w.finish().map(|_| ()).map_err(|e| db_error(&e));
        let text = input_text(value);
        let theirs =
            attacker.execute(&format!("INSERT INTO x VALUES ('{text}')"), &[]).map(|_| ()).map_err(|e| db_error(&e));
        witness.assert_no_crash();
        match (&ours, &theirs) {
            (Err(o), Err(t)) => assert!(o.0 == t.0 && o.1.ends_with(&t.1), "{value} into {sql_type}: {o:?} vs {t:?}"),
            _ => assert_eq!(ours.is_ok(), theirs.is_ok(), "{value} into {sql_type}: {ours:?} vs {theirs:?}"),
        }
    }
    // a domain's NOT NULL and CHECKs see JSON null and missing keys, on every path
    let c = &mut db.client;
    c.batch_execute(
        "CREATE DOMAIN nn AS text NOT NULL; CREATE DOMAIN nn2 AS int CHECK (VALUE IS NOT NULL); \
         CREATE TABLE tnn (id int, v nn, w nn2)",
    )
    .unwrap();
    // (NOT NULL: 23502; a CHECK that fails on NULL: 23514, as INSERT raises them)
    for (line, code) in [
        (r#"{"id": 1, "v": null, "w": 1}"#, "23502"),
        (r#"{"id": 2, "w": 1}"#, "23502"),
        (r#"{"id": 3, "v": "x"}"#, "23514"),
    ] {
        let path = dir.write("nn.jsonl", format!("{line}\n"));
        let e = ingest(c, &path, "'tnn', force => true").unwrap_err();
        assert_eq!(db_error(&e).0, code, "{line}: {e}");
        let e = c.query(&format!("SELECT * FROM read_jsonl('{path}', NULL::tnn)"), &[]).unwrap_err();
        assert_eq!(db_error(&e).0, code, "read_jsonl {line}: {e}");
    }
    let path = dir.write("nn_ok.jsonl", "{\"id\": 4, \"v\": \"x\", \"w\": 2}\n");
    assert_eq!(ingest(c, &path, "'tnn'").unwrap().rows_inserted, 1);
    // a constant DEFAULT that fails fails only for the lines that need it, as INSERT's does
    c.batch_execute(
        "CREATE DOMAIN positive AS int CHECK (VALUE IS NOT NULL AND VALUE > 0); \
         CREATE TABLE dflt (n int, v positive DEFAULT NULL)",
    )
    .unwrap();
    let path = dir.write("dflt.jsonl", "{\"n\": 1, \"v\": 5}\n{\"n\": 2}\n{\"n\": 3, \"v\": 6}\n");
    let r = ingest(c, &path, "'dflt', on_error => 'skip'").unwrap();
    assert_eq!((r.rows_inserted, r.rows_rejected), (2, 1));
    let (line, code): (i64, String) = c
        .query_one("SELECT line, sqlstate FROM ingest.rejects WHERE load_id = $1", &[&r.load_id])
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!((line, code.as_str()), (2, "23514"));
    // json nested deeper than json_in takes: json_in's own error, not a value nothing can read
    c.batch_execute("CREATE TABLE deep (id int, j json)").unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let path = dir.write("deep.jsonl", format!("{{\"id\": 1, \"j\": {deep}}}\n"));
    let ours = db_error(&ingest(c, &path, "'deep'").unwrap_err());
    let theirs = db_error(&c.execute("INSERT INTO deep VALUES (1, $1::text::json)", &[&deep]).unwrap_err());
    assert_eq!(ours.0, theirs.0, "{ours:?} vs {theirs:?}");
    let fine = format!("{}{}", "[".repeat(400), "]".repeat(400));
    let path = dir.write("fine.jsonl", format!("{{\"id\": 2, \"j\": {fine}}}\n"));
    ingest(c, &path, "'deep'").unwrap();
    witness.assert_no_crash();
}
