//! `on_error => 'skip'` against PostgreSQL itself, line by line: seeded random JSON-lines
//! files mixing good lines, lines the parser refuses, lines PostgreSQL refuses and blank
//! lines (in runs, at the file's start, around chunk edges) are loaded, and PostgreSQL decides
//! each non-blank line on its own: a savepoint-wrapped INSERT of the same values into a twin
//! table (the whole line `::jsonb`, or `jsonb_populate_record` for a table that maps keys to
//! columns). Then the loaded rows equal the twin's (EXCEPT ALL both ways, line numbers
//! included where the table has them), every refused line is in `ingest.rejects` exactly once,
//! at its own line and with PostgreSQL's class of error, only blank lines are skipped, and
//! `lines = rows_inserted + rows_rejected + lines_skipped`.
//!
//! `SKIP_FUZZ_SEED=n` replays another seed.

use std::collections::BTreeMap;

use pg_ingest_tests::{connect_as, ingest, server, DataDir, LoadSummary};
use postgres::Client;

/// The smallest pg_ingest.chunk_bytes (gucs.rs): small chunks, so that files cross many edges.
const CHUNK_BYTES: usize = 64 * 1024;
const SMALL_FILES: usize = 200;
/// Files of a few chunks, bad lines everywhere.
const LARGE_FILES: usize = 8;
const LARGE_FILE_BYTES: usize = 5 * CHUNK_BYTES + 20_000;
/// Files of many chunks, written up to 8 chunks at a time while that succeeds.
const CLEAN_FILES: usize = 2;
const CLEAN_FILE_BYTES: usize = 24 * CHUNK_BYTES;

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `w (doc jsonb)`: each line is the value.
    Whole,
    /// `m (n, s, i, v, c, j, k)`: keys map to columns; `n` is the line's own number.
    Mapped,
}

/// What the generator meant a line to be (PostgreSQL decides; the test checks they agree, so
/// that every kind below is really covered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Good,
    /// Invalid JSON or UTF-8, not an object where one is needed: pg_ingest's parser refuses it.
    Parser,
    /// Valid JSON that PostgreSQL refuses: input functions, `\u0000` and lone surrogates in
    /// jsonb and text, out of range, varchar(6), CHECK, NOT NULL.
    Postgres,
    Blank,
}

/// Up to `max` pieces of JSON string content, escapes and multi-byte text included.
fn string_body(rng: &mut Rng, max: usize) -> String {
    const PIECES: &[&str] = &[
        "a",
        "b",
        "xyz",
        " ",
        "é",
        "日本",
        "𝄞",
        "✓",
        "\\\"",
        "\\\\",
        "\\n",
        "\\t",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\/",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "0",
        "42",
    ];
    let n = rng.below(max + 1);
    (0..n).map(|_| *rng.pick(PIECES)).collect()
}

/// A valid JSON value (no `\u0000`, no lone surrogates), nested a little.
fn json_value(rng: &mut Rng, depth: usize) -> String {
    match rng.below(if depth > 2 { 5 } else { 7 }) {
        0 => format!("\"{}\"", string_body(rng, 6)),
        1 => rng.pick(&["0", "-1", "42", "3.25", "-0.5e-3", "1E+2", "123456789012345678901234567890"]).to_string(),
        2 => rng.pick(&["true", "false", "null"]).to_string(),
        3 => format!("\"{}\"", string_body(rng, 2)),
        4 => format!("{}", rng.below(1_000_000)),
        5 => {
            let items: Vec<String> = (0..rng.below(4)).map(|_| json_value(rng, depth + 1)).collect();
            format!("[{}]", items.join(", "))
        }
        _ => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|i| format!("\"k{i}{}\": {}", string_body(rng, 2), json_value(rng, depth + 1)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Bytes that are not UTF-8, as a whole line or inside a string.
fn invalid_utf8(rng: &mut Rng, n: usize) -> Vec<u8> {
    match rng.below(6) {
        // the report's UTF-16 line: FF FE then `["a"]` in UTF-16LE
        0 => b"\xff\xfe\x5b\x00\x22\x00\x61\x00\x22\x00\x5d\x00".to_vec(),
        1 => cat(&[format!("{{\"n\": {n}, \"s\": \"ab").as_bytes(), b"\xff\"}"]),
        2 => cat(&[format!("{{\"n\": {n}, \"s\": \"").as_bytes(), b"\xc3\x28\"}"]),
        3 => cat(&[format!("{{\"n\": {n}, \"k\": \"").as_bytes(), b"\xed\xa0\x80", b"\"}"]),
        4 => cat(&[format!("{{\"n\": {n}, \"k\": \"").as_bytes(), b"\xc0\xaf", b"\"}"]),
        _ => cat(&[b"\x80", format!("{{\"n\": {n}}}").as_bytes()]),
    }
}

/// A line the parser refuses whatever the target. `first`: it is the file's first non-blank
/// line, where `auto` decides the file's shape from it: no line that could begin a
/// pretty-printed value ending lines later, nor two values on one line (both are `json`).
fn parser_bad(rng: &mut Rng, n: usize, first: bool) -> Vec<u8> {
    let choices = if first { 11 } else { 15 };
    match rng.below(choices) {
        0 => format!("{{\"n\": {n},}}").into_bytes(),
        1 => format!("{{\"n\": {n} \"k\": \"x\"}}").into_bytes(),
        2 => format!("{{n: {n}}}").into_bytes(),
        3 => format!("{{'n': {n}}}").into_bytes(),
        4 => format!("{{\"n\": {n}, \"k\": tru}}").into_bytes(),
        5 => format!("{{\"n\": {n}}}}}").into_bytes(),
        6 => format!("{{\"n\": {n}}} x").into_bytes(),
        7 => b"nope".to_vec(),
        8 => invalid_utf8(rng, n),
        // raw control characters inside a string: a tab, a NUL byte
        9 => format!("{{\"n\": {n}, \"k\": \"a\tb\"}}").into_bytes(),
        10 => cat(&[format!("{{\"n\": {n}, \"k\": \"a").as_bytes(), b"\0", b"b\"}"]),
        // cut short: its brackets close on some later line, if ever
        11 => format!("{{\"n\": {n}, \"k\": \"abc").into_bytes(),
        12 => format!("{{\"n\": {n}, \"j\": [1, {{\"a\": ").into_bytes(),
        13 => format!("{{\"n\": {n}}}{{\"n\": {n}}}").into_bytes(),
        _ => b"]".to_vec(),
    }
}

/// One non-blank line of `kind` for `target`, meant to be line `n`.
fn line(rng: &mut Rng, target: Target, kind: Kind, n: usize, first: bool) -> Vec<u8> {
    let pad = if rng.chance(30) { format!(", \"pad\": \"{}\"", "p".repeat(rng.below(300))) } else { String::new() };
    match (target, kind) {
        (_, Kind::Blank) => rng.pick(&["", " ", "\t", "  \t ", "\r"]).as_bytes().to_vec(),
        (Target::Whole, Kind::Good) => match rng.below(6) {
            0 => format!("{{\"n\": {n}, \"v\": {}{pad}}}", json_value(rng, 0)),
            1 => format!("[{n}, {}]", json_value(rng, 1)),
            // an array of strings, as a header would be
            2 => format!("[\"{}\", \"{}\"]", string_body(rng, 3), string_body(rng, 3)),
            3 => rng.pick(&["42", "-1.5e3", "\"just a string\"", "true", "false", "0"]).to_string(),
            4 => format!("  {{\"n\":{n},\"o\":{}}}  ", json_value(rng, 0)),
            _ => json_value(rng, 0).replace("null", "1"),
        }
        .into_bytes(),
        (Target::Whole, Kind::Postgres) => match rng.below(5) {
            // the report's line: a lone surrogate, refused by jsonb's input function
            0 => r#"["\uD888\u1234"]"#.to_owned(),
            1 => format!("{{\"n\": {n}, \"s\": \"\\uDC00\"{pad}}}"),
            2 => r#""\uD800""#.to_owned(),
            3 => format!("{{\"n\": {n}, \"s\": \"a\\u0000b\"}}"),
            _ => format!("[{n}, [\"\\u0000\"]]"),
        }
        .into_bytes(),
        (Target::Mapped, Kind::Good) => {
            let mut fields =
                vec![format!("\"n\": {}", if rng.chance(10) { format!("\"{n}\"") } else { n.to_string() })];
            if rng.chance(80) {
                fields.push(format!("\"s\": \"{}\"", string_body(rng, 8)));
            }
            if rng.chance(80) {
                let i = rng.pick(&["0", "-7", "2147483647", "-2147483648", "\"123\"", "null", "65536"]).to_string();
                fields.push(format!("\"i\": {i}"));
            }
            if rng.chance(60) {
                fields.push(format!("\"v\": \"{}\"", rng.pick(&["", "abc", "äöüßéè", "日本語", "123456", "a b"])));
            }
            if rng.chance(60) {
                fields.push(format!("\"c\": {}", rng.pick(&["0", "12", "14", "-13", "null"])));
            }
            if rng.chance(70) {
                fields.push(format!("\"j\": {}", json_value(rng, 0)));
            }
            if rng.chance(20) {
                fields.push(format!("\"zz\": {}", json_value(rng, 1)));
            }
            fields.push(format!("\"k\": \"{}\"", string_body(rng, 4)));
            shuffle(rng, &mut fields);
            format!("{{{}{pad}}}", fields.join(if rng.chance(50) { ", " } else { "," })).into_bytes()
        }
        (Target::Mapped, Kind::Postgres) => {
            let bad = match rng.below(9) {
                0 => "\"i\": \"abc\"".to_owned(),
                1 => "\"i\": 2147483648".to_owned(),
                2 => "\"i\": 1.5".to_owned(),
                3 => "\"v\": \"toolong!\"".to_owned(),
                4 => "\"c\": 13".to_owned(),
                5 => "\"k\": null".to_owned(),
                6 => "\"s\": \"a\\u0000b\"".to_owned(),
                7 => r#""j": ["\uD888\u1234"]"#.to_owned(),
                _ => "\"j\": {\"a\": \"\\u0000\"}".to_owned(),
            };
            let mut fields = vec![format!("\"n\": {n}"), bad.clone()];
            if !bad.starts_with("\"k\"") && rng.chance(85) {
                fields.push("\"k\": \"x\"".to_owned());
            }
            shuffle(rng, &mut fields);
            format!("{{{}{pad}}}", fields.join(", ")).into_bytes()
        }
        (Target::Mapped, Kind::Parser) if rng.chance(35) => {
            // not an object: an array of strings first would be a header (a documented feature)
            let arrays: &[&str] = if first { &["[1, 2]", "[]"] } else { &["[1, 2]", "[]", "[\"a\", \"b\"]"] };
            let choice = *rng.pick(&["42", "\"text\"", "true", "null", "[1, 2]", "ARRAY"]);
            let choice = if choice == "ARRAY" { rng.pick(arrays) } else { choice };
            choice.as_bytes().to_vec()
        }
        (_, Kind::Parser) => parser_bad(rng, n, first),
    }
}

fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// A generated file: its lines (without newlines) and what each was meant to be.
struct File {
    lines: Vec<(Vec<u8>, Kind)>,
    /// Chunk edges with a bad or blank line on one side or both (as the parse threads cut it).
    bad_edges: usize,
    edges: usize,
}

impl File {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (l, _) in &self.lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        out
    }
}

fn some_bad(rng: &mut Rng) -> Kind {
    *rng.pick(&[Kind::Parser, Kind::Postgres, Kind::Postgres, Kind::Blank])
}

/// Lines until `bytes`, in runs: a run of one kind (or of bad and blank lines mixed) now and
/// then, often at the start, and mostly bad or blank lines where a chunk ends and the next
/// begins (the framer's cut: after the last newline within `CHUNK_BYTES` of the chunk's start).
/// A `clean` file has a bad line now and then only, mostly at chunk edges: its chunks go
/// several to one attempt, and the attempt that fails holds good chunks too.
fn generate(rng: &mut Rng, target: Target, bytes: usize, clean: bool) -> File {
    let mut lines: Vec<(Vec<u8>, Kind)> = Vec::new();
    let (mut offset, mut chunk_start) = (0usize, 0usize);
    let mut run: Vec<Kind> = Vec::new();
    if rng.chance(if clean { 20 } else { 50 }) {
        run = (0..1 + rng.below(6)).map(|_| some_bad(rng)).collect();
    }
    let (mut bad_edges, mut edges) = (0, 0);
    loop {
        let started = lines.iter().any(|(_, k)| *k != Kind::Blank);
        if offset >= bytes && started {
            break;
        }
        let near_edge = chunk_start + CHUNK_BYTES - offset.min(chunk_start + CHUNK_BYTES) < 600;
        let kind = match run.pop() {
            Some(k) => k,
            None if clean && near_edge && rng.chance(3) => some_bad(rng),
            None if clean => {
                if rng.below(5000) == 0 {
                    some_bad(rng)
                } else {
                    Kind::Good
                }
            }
            None if near_edge && rng.chance(80) => some_bad(rng),
            None if rng.chance(6) => {
                let k = some_bad(rng);
                let mixed = rng.chance(50);
                run = (0..2 + rng.below(12)).map(|_| if mixed { some_bad(rng) } else { k }).collect();
                k
            }
            None => {
                *rng.pick(&[Kind::Good, Kind::Good, Kind::Good, Kind::Good, Kind::Parser, Kind::Postgres, Kind::Blank])
            }
        };
        let n = lines.len() + 1;
        let text = line(rng, target, kind, n, kind != Kind::Blank && !started);
        let len = text.len() + 1;
        if offset + len > chunk_start + CHUNK_BYTES {
            // this line begins the next chunk
            edges += 1;
            let before = lines.last().map(|(_, k)| *k);
            if kind != Kind::Good || before.is_some_and(|k| k != Kind::Good) {
                bad_edges += 1;
            }
            chunk_start = offset;
        }
        offset += len;
        lines.push((text, kind));
    }
    // `auto` reads an array alone on the first line, with nothing after it, as a document (its
    // elements the rows): the file goes on after it
    lines.push((line(rng, target, Kind::Good, lines.len() + 1, false), Kind::Good));
    File { lines, bad_edges, edges }
}

const SETUP: &str = "
    CREATE TABLE w (doc jsonb);
    CREATE TABLE w_twin (LIKE w INCLUDING ALL);
    CREATE TABLE m (n int8 NOT NULL, s text, i int4, v varchar(6), c int4 CHECK (c <> 13), j jsonb, k text NOT NULL);
    CREATE TABLE m_twin (LIKE m INCLUDING ALL);
    -- PostgreSQL's verdict on each line: NULL when it inserts the line's values, else the SQLSTATE
    CREATE FUNCTION verdicts(target text, lines bytea[]) RETURNS text[] LANGUAGE plpgsql AS $$
    DECLARE
        out text[] := '{}';
        l bytea;
    BEGIN
        FOREACH l IN ARRAY lines LOOP
            BEGIN
                IF target = 'w' THEN
                    INSERT INTO w_twin SELECT convert_from(l, 'UTF8')::jsonb;
                ELSE
                    INSERT INTO m_twin SELECT * FROM jsonb_populate_record(NULL::m_twin, convert_from(l, 'UTF8')::jsonb);
                END IF;
                out := out || NULL::text;
            EXCEPTION WHEN OTHERS THEN
                out := out || SQLSTATE::text;
            END;
        END LOOP;
        RETURN out;
    END $$;
";

fn fresh_db(name: &str) -> Client {
    let (_, _, user) = server();
    let mut admin = connect_as("postgres", &user);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    // connect_as sets statement_timeout for the session
    let mut c = connect_as(name, &user);
    c.batch_execute("CREATE EXTENSION pg_ingest").unwrap();
    c.batch_execute(&format!("SET pg_ingest.chunk_bytes = {CHUNK_BYTES}")).unwrap();
    c.batch_execute(SETUP).unwrap();
    c
}

fn is_blank(l: &[u8]) -> bool {
    l.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

#[derive(Default)]
struct Totals {
    files: usize,
    lines: usize,
    kinds: BTreeMap<String, usize>,
    edges: usize,
    bad_edges: usize,
    bad_first: usize,
}

/// `ingest_jsonl(path, table, on_error => 'skip'<extra>)`, or with `extra` `COPY (FORMAT …)`,
/// `COPY table FROM path WITH (FORMAT …, ON_ERROR ignore)` and its `ingest.loads` row.
fn load(c: &mut Client, path: &str, table: &str, extra: &str) -> Result<LoadSummary, postgres::Error> {
    let Some(format) = extra.strip_prefix("COPY (FORMAT ").and_then(|f| f.strip_suffix(')')) else {
        return ingest(c, path, &format!("'{table}', on_error => 'skip'{extra}"));
    };
    let copied = c.execute(&format!("COPY {table} FROM '{path}' WITH (FORMAT {format}, ON_ERROR ignore)"), &[])?;
    let r = c.query_one(
        "SELECT file, target, status, lines, rows_inserted, rows_rejected, lines_skipped, bytes, seconds, load_id \
         FROM ingest.loads ORDER BY load_id DESC LIMIT 1",
        &[],
    )?;
    let r = pg_ingest_tests::loaded_from_row(&r);
    assert_eq!(copied as i64, r.rows_inserted, "COPY's count and its load's");
    Ok(r)
}

/// Loads one file and checks it against PostgreSQL, line by line; `Err` says what differs.
fn check_file(
    c: &mut Client,
    dir: &DataDir,
    name: &str,
    file: &File,
    target: Target,
    extra: &str,
) -> Result<(), String> {
    let (table, twin, key) = match target {
        Target::Whole => ("w", "w_twin", "doc::text"),
        Target::Mapped => ("m", "m_twin", "n, s, i, v, c, j::text, k"),
    };
    c.batch_execute(&format!("TRUNCATE {table}, {twin}")).unwrap();
    // PostgreSQL's verdict on every non-blank line
    let nonblank: Vec<(usize, &Vec<u8>)> =
        file.lines.iter().enumerate().filter(|(_, (l, _))| !is_blank(l)).map(|(i, (l, _))| (i + 1, l)).collect();
    let texts: Vec<Vec<u8>> = nonblank.iter().map(|(_, l)| l.to_vec()).collect();
    let verdicts: Vec<Option<String>> = c.query_one("SELECT verdicts($1, $2)", &[&table, &texts]).unwrap().get(0);
    let mut refused: BTreeMap<i64, String> = BTreeMap::new();
    for ((n, l), v) in nonblank.iter().zip(&verdicts) {
        let meant = file.lines[n - 1].1;
        // the generator is honest: every kind it claims is really there
        assert_eq!(
            meant == Kind::Good,
            v.is_none(),
            "generator: line {n} meant {meant:?}, PostgreSQL says {v:?}: {}",
            String::from_utf8_lossy(l)
        );
        if let Some(state) = v {
            refused.insert(*n as i64, state.clone());
        }
    }
    let blank = file.lines.len() - nonblank.len();
    let path = dir.write(name, file.bytes());
    let r = load(c, &path, table, extra).map_err(|e| format!("the load failed: {e:?}"))?;
    let mut problems = Vec::new();
    let want = (file.lines.len() as i64, (nonblank.len() - refused.len()) as i64, refused.len() as i64, blank as i64);
    let got = (r.lines, r.rows_inserted, r.rows_rejected, r.lines_skipped);
    if got != want {
        problems.push(format!("(lines, inserted, rejected, skipped) = {got:?}, PostgreSQL says {want:?}"));
    }
    if r.lines != r.rows_inserted + r.rows_rejected + r.lines_skipped {
        problems.push(format!("the counts do not add up: {got:?}"));
    }
    let differences: Vec<String> = c
        .query(
            &format!(
                "(SELECT 'loaded, not by PostgreSQL: ' || row({key})::text FROM \
                   (SELECT {key} FROM {table} EXCEPT ALL SELECT {key} FROM {twin}) d) \
                 UNION ALL (SELECT 'by PostgreSQL, not loaded: ' || row({key})::text FROM \
                   (SELECT {key} FROM {twin} EXCEPT ALL SELECT {key} FROM {table}) d) LIMIT 10"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    problems.extend(differences);
    let rejects: BTreeMap<i64, (i64, String)> = c
        .query(
            // with writers, each range is a load of its own under the caller's
            "SELECT line, count(*), string_agg(sqlstate, ',') FROM ingest.rejects WHERE load_id IN \
               (SELECT load_id FROM ingest.loads WHERE load_id = $1 OR parent_load_id = $1) GROUP BY line",
            &[&r.load_id],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    for (line, state) in &refused {
        match rejects.get(line) {
            None => problems.push(format!("line {line} (PostgreSQL: {state}) is not in ingest.rejects")),
            Some((count, _)) if *count != 1 => problems.push(format!("line {line} is in ingest.rejects {count} times")),
            Some((_, got)) if got[..2] != state[..2] => {
                problems.push(format!("line {line} rejected with {got}, PostgreSQL refuses it with {state}"))
            }
            _ => {}
        }
    }
    for line in rejects.keys().filter(|l| !refused.contains_key(l)) {
        problems.push(format!("line {line} is in ingest.rejects, PostgreSQL takes it"));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = problems
        .iter()
        .take(12)
        .map(|p| {
            let line = p.strip_prefix("line ").and_then(|s| s.split(' ').next()).and_then(|n| n.parse::<usize>().ok());
            match line.and_then(|n| file.lines.get(n.wrapping_sub(1))) {
                Some((text, kind)) => format!("{p}\n      {kind:?}: {}", String::from_utf8_lossy(text)),
                None => p.clone(),
            }
        })
        .collect();
    Err(format!("{} problem(s):\n    {}", problems.len(), shown.join("\n    ")))
}

#[test]
fn skipped_loads_agree_with_postgresql_line_by_line() {
    let seed: u64 = std::env::var("SKIP_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_260_529);
    let mut rng = Rng(seed);
    let mut c = fresh_db("pgi_e2e_skip_fuzz");
    let dir = DataDir::new();
    let mut totals = Totals::default();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..SMALL_FILES + LARGE_FILES + CLEAN_FILES {
        let target = if i % 2 == 0 { Target::Whole } else { Target::Mapped };
        let (size, clean) = match i {
            _ if i < SMALL_FILES => (rng.below(3000), false),
            _ if i < SMALL_FILES + LARGE_FILES => (LARGE_FILE_BYTES, false),
            _ => (CLEAN_FILE_BYTES, true),
        };
        let file = generate(&mut rng, target, size, clean);
        // the default format (auto: the shape told from the first line) and jsonl, one or two
        // parse threads; files of several chunks also cut into ranges for two writers
        let mut extra =
            format!("{}, threads => {}", if i % 4 < 2 { "" } else { ", format => 'jsonl'" }, 1 + (i / 4) % 2);
        if i >= SMALL_FILES && (i / 2) % 2 == 1 {
            extra.push_str(", writers => 2");
        }
        // and some through COPY … (FORMAT jsonl | auto, ON_ERROR ignore)
        if i < SMALL_FILES && i % 8 >= 6 {
            extra = format!("COPY (FORMAT {})", if i % 16 < 8 { "auto" } else { "jsonl" });
        }
        totals.files += 1;
        totals.lines += file.lines.len();
        totals.edges += file.edges;
        totals.bad_edges += file.bad_edges;
        if file.lines.iter().find(|(l, _)| !is_blank(l)).is_some_and(|(_, k)| *k != Kind::Good) {
            totals.bad_first += 1;
        }
        for (_, k) in &file.lines {
            *totals.kinds.entry(format!("{k:?}")).or_default() += 1;
        }
        let name = format!("f{i:03}.jsonl");
        if let Err(e) = check_file(&mut c, &dir, &name, &file, target, &extra) {
            let how = extra.trim_start_matches(", ");
            failures.push(format!("file {i} ({target:?}, {} lines, {how}): {e}", file.lines.len()));
        }
    }
    println!(
        "seed {seed}: {} files, {} lines {:?}, {} chunk edges ({} with a bad or blank line beside), \
         {} files starting with a bad line, in {:.1}s",
        totals.files,
        totals.lines,
        totals.kinds,
        totals.edges,
        totals.bad_edges,
        totals.bad_first,
        started.elapsed().as_secs_f64()
    );
    // the files cover what they claim to
    assert!(totals.bad_edges >= 20 && totals.bad_first >= 40, "too little coverage");
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {} files differ from PostgreSQL:\n{}",
        failures.len(),
        totals.files,
        failures.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
}
