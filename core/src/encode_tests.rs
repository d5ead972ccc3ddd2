use super::*;
use crate::framing::LineFramer;
use crate::mapping::parse_path;

/// A decoded field: by its tag, NULL, or a hole (a per-row DEFAULT).
#[derive(Debug, Clone, PartialEq, Eq)]
enum F {
    /// For the receive function.
    B(Vec<u8>),
    /// A finished datum.
    D(Vec<u8>),
    /// Text for the input function.
    In(String),
    /// A wall-clock time for the session's TimeZone, and its text.
    Local(i64, String),
    Null,
    Hole,
}

fn col(name: &str, kind: ColumnKind) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        kind,
        default: DefaultValue::Null,
        source: Source::Key,
        finished: false,
        typmod: -1,
        element: None,
    }
}

fn encode(cols: Vec<ColumnSpec>, input: &str, opts: EncodeOptions) -> EncodedChunk {
    let enc = RowEncoder::new(cols, opts).unwrap();
    let chunk = LineFramer::new(input.as_bytes(), 1 << 20, 1 << 20).next_chunk().unwrap().unwrap();
    enc.encode_chunk(&chunk, &AtomicBool::new(false))
}

/// Splits the chunk's bytes back into rows of fields, holes included.
fn decode(ch: &EncodedChunk, ncols: usize) -> Vec<Vec<F>> {
    let mut rows = Vec::new();
    let mut p = 0;
    let mut holes = ch.holes.iter().peekable();
    while p < ch.bytes.len() {
        let n = i16::from_be_bytes(ch.bytes[p..p + 2].try_into().unwrap()) as usize;
        assert_eq!(n, ncols);
        p += 2;
        let mut row = Vec::new();
        for _ in 0..n {
            if holes.peek().is_some_and(|h| h.at == p) {
                holes.next();
                row.push(F::Hole);
                continue;
            }
            let len = i32::from_be_bytes(ch.bytes[p..p + 4].try_into().unwrap());
            p += 4;
            if len < 0 {
                row.push(F::Null);
                continue;
            }
            let (tag, data) = (ch.bytes[p], &ch.bytes[p + 1..p + len as usize]);
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            row.push(match tag {
                TAG_RECEIVE => F::B(data.to_vec()),
                TAG_DATUM => F::D(data.to_vec()),
                TAG_INPUT => F::In(text(data)),
                TAG_LOCAL => F::Local(i64::from_ne_bytes(data[..8].try_into().unwrap()), text(&data[8..])),
                _ => panic!("tag {tag}"),
            });
            p += len as usize;
        }
        rows.push(row);
    }
    assert!(holes.next().is_none());
    rows
}

fn t(s: &str) -> F {
    F::B(s.as_bytes().to_vec())
}

fn chat_columns() -> Vec<ColumnSpec> {
    vec![
        col("id", ColumnKind::Text),
        col("from", ColumnKind::Text),
        col("type", ColumnKind::Text),
        col("site_id", ColumnKind::Text),
        ColumnSpec { default: DefaultValue::Const(Some(vec![TAG_RECEIVE])), ..col("data", ColumnKind::Text) },
        col("timestamp", ColumnKind::Timestamptz),
        col("meta", ColumnKind::Jsonb),
    ]
}

#[test]
fn chat_lines_become_rows() {
    let input = concat!(
        r#"{"id":"msg-1","from":"user1","type":"message","site_id":"site-4","data":"a \"q\" \\ 日本","timestamp":946684801}"#,
        "\n",
        r#"{"id":"msg-2","from":"u","type":"status","site_id":"s","timestamp":946684800,"meta":{"client":"web"}}"#,
        "\n"
    );
    let ch = encode(chat_columns(), input, EncodeOptions::default());
    assert!(ch.errors.is_empty(), "{:?}", ch.errors);
    assert_eq!((ch.rows, ch.lines, ch.blank_lines), (2, 2, 0));
    let rows = decode(&ch, 7);
    assert_eq!(
        rows[0],
        vec![
            t("msg-1"),
            t("user1"),
            t("message"),
            t("site-4"),
            t("a \"q\" \\ 日本"),
            F::B(1_000_000i64.to_be_bytes().to_vec()),
            F::Null
        ]
    );
    // missing data → its constant default (''), meta → jsonb version 1 + the text as it was
    assert_eq!(rows[1][4], t(""));
    assert_eq!(rows[1][5], F::B(0i64.to_be_bytes().to_vec()));
    assert_eq!(rows[1][6], F::B(b"\x01{\"client\":\"web\"}".to_vec()));
}

#[test]
fn nulls_defaults_and_holes() {
    let cols = vec![
        col("a", ColumnKind::Int4),
        ColumnSpec { default: DefaultValue::PerRow, ..col("b", ColumnKind::Int8) },
        ColumnSpec {
            default: DefaultValue::Const(Some([&[TAG_RECEIVE][..], &7i32.to_be_bytes()].concat())),
            ..col("c", ColumnKind::Int4)
        },
        col("d", ColumnKind::Other),
        col("e", ColumnKind::Array),
        col("f", ColumnKind::Bool),
        col("g", ColumnKind::Timestamptz),
    ];
    let ch = encode(
        cols,
        r#"{"a":null,"c":null,"d":"192.168.0.1/24","e":[1,null,"x y"],"f":"yes","g":"2014-08-31 00:29:15+00"}"#,
        EncodeOptions::default(),
    );
    assert_eq!(
        decode(&ch, 7)[0],
        vec![
            F::Null,
            F::Hole,
            F::Null, // JSON null is NULL, not the default
            F::In("192.168.0.1/24".into()),
            F::In("{1,NULL,\"x y\"}".into()),
            F::In("yes".into()),
            F::B(utc_us(2014, 8, 31, (29 * 60 + 15) * 1_000_000).to_be_bytes().to_vec()),
        ]
    );
    assert_eq!(ch.holes.iter().map(|h| h.column).collect::<Vec<_>>(), vec![1]);
    assert_eq!(ch.checked_rows, vec![0], "text for input functions: PostgreSQL may refuse the row");
    assert!(ch.holes.iter().all(|h| h.line == 1));
}

#[test]
fn numbers_keep_their_exact_text() {
    let cols = vec![col("n", ColumnKind::Other), col("t", ColumnKind::Text), col("b", ColumnKind::Int8)];
    let ch = encode(
        cols,
        r#"{"n":505874924095815681.000000000001,"t":1e400,"b":505874924095815681}"#,
        EncodeOptions::default(),
    );
    assert_eq!(
        decode(&ch, 3)[0],
        vec![
            F::In("505874924095815681.000000000001".into()),
            t("1e400"),
            F::B(505874924095815681i64.to_be_bytes().to_vec())
        ]
    );
}

#[test]
fn keys_match_exactly_then_case_insensitively() {
    let cols = vec![col("Name", ColumnKind::Text), col("site", ColumnKind::Text)];
    let ch = encode(
        cols,
        "{\"SITE\":\"folded\",\"name\":\"n\",\"Name\":\"exact\"}\n{\"site\":\"exact\",\"SITE\":\"folded\"}",
        EncodeOptions::default(),
    );
    let rows = decode(&ch, 2);
    assert_eq!(rows[0], vec![t("exact"), t("folded")]);
    assert_eq!(rows[1], vec![F::Null, t("exact")]);
}

#[test]
fn escaped_keys_are_decoded_before_matching() {
    let ch = encode(vec![col("id", ColumnKind::Text)], r#"{"i\u0064":"x"}"#, EncodeOptions::default());
    assert_eq!(decode(&ch, 1)[0], vec![t("x")]);
}

#[test]
fn paths_whole_line_and_rest() {
    let cols = vec![
        ColumnSpec { source: parse_path("meta.client").unwrap(), ..col("client", ColumnKind::Text) },
        ColumnSpec { source: parse_path("meta.tags[1]").unwrap(), ..col("tag", ColumnKind::Text) },
        ColumnSpec { source: parse_path("$").unwrap(), ..col("doc", ColumnKind::Json) },
        col("id", ColumnKind::Text),
        ColumnSpec { source: Source::Rest, ..col("extra", ColumnKind::Jsonb) },
    ];
    let line = r#"{"id":"1","meta":{"client":"ios","tags":["a","b"]},"x":1,"y":[true]}"#;
    let ch = encode(cols.clone(), &format!("  {line} \n{{\"id\":\"2\"}}"), EncodeOptions::default());
    let rows = decode(&ch, 5);
    assert_eq!(rows[0], vec![t("ios"), t("b"), t(line), t("1"), F::B(b"\x01{\"x\":1,\"y\":[true]}".to_vec())]);
    assert_eq!(rows[1], vec![F::Null, F::Null, t("{\"id\":\"2\"}"), t("2"), F::Null]);
}

#[test]
fn whole_line_only_accepts_any_json_value() {
    let cols = vec![ColumnSpec { source: Source::WholeLine, ..col("doc", ColumnKind::Jsonb) }];
    let ch = encode(cols, "[1,2]\n\"s\"\n{\"a\":1}", EncodeOptions::default());
    assert!(ch.errors.is_empty());
    assert_eq!(ch.rows, 3);
}

#[test]
fn bad_lines_name_line_offset_column_and_reason() {
    let opts = EncodeOptions { stop_at_first_error: false, ..EncodeOptions::default() };
    let input = [
        r#"{"id":"ok"}"#,
        r#"{"id": "a" "b"}"#,
        "{\"id\":\"\\u0000\"}",
        "[1]",
        "",
        r#"{"n": 2147483648}"#,
        r#"{"ts": 1e300}"#,
        r#"{"id":"ok too"}"#,
    ]
    .join("\n");
    let mut bytes = input.into_bytes();
    bytes.extend_from_slice(b"\n{\"id\":\"\xff\"}\n");
    let enc = RowEncoder::new(
        vec![col("id", ColumnKind::Text), col("n", ColumnKind::Int4), col("ts", ColumnKind::Timestamptz)],
        opts,
    )
    .unwrap();
    let chunk = LineFramer::new(&bytes[..], 1 << 20, 1 << 20).next_chunk().unwrap().unwrap();
    let ch = enc.encode_chunk(&chunk, &AtomicBool::new(false));
    let got: Vec<(u64, Option<&str>, &str)> =
        ch.errors.iter().map(|e| (e.line, e.column.as_deref(), e.sqlstate)).collect();
    assert_eq!(
        got,
        vec![
            (2, None, "22P02"),
            (3, Some("id"), "22P05"),
            (4, None, "22P02"),
            (6, Some("n"), "22003"),
            (7, Some("ts"), "22008"),
            (9, None, "22021")
        ]
    );
    assert_eq!(ch.errors[0].offset, 12);
    assert_eq!(ch.errors[0].detail.as_deref(), Some("expected \",\" or \"}\", found \"\"\" at character 12"));
    assert_eq!(ch.errors[2].message, "line is not a JSON object");
    assert_eq!(ch.errors[5].message, "invalid byte sequence for encoding \"UTF8\": 0xff");
    assert_eq!((ch.rows, ch.blank_lines, ch.lines), (2, 1, 9));
    // rows 0 and 1 are lines 1 and 8
    assert_eq!((ch.line_of_row(0), ch.line_of_row(1)), (Some(1), Some(8)));
    assert_eq!(decode(&ch, 3).len(), 2, "bad rows leave no bytes behind");
}

#[test]
fn stop_at_first_error_keeps_the_rows_before_it() {
    let ch = encode(
        vec![col("id", ColumnKind::Text)],
        "{\"id\":\"1\"}\n{\"id\":\"2\"}\nnope\n{\"id\":\"4\"}",
        EncodeOptions::default(),
    );
    assert_eq!(ch.rows, 2);
    assert_eq!(ch.errors.len(), 1);
    assert_eq!(ch.errors[0].line, 3);
}

#[test]
fn blank_lines_shift_the_row_to_line_map() {
    let ch = encode(
        vec![col("id", ColumnKind::Text)],
        "\n{\"id\":\"1\"}\n\n \t\n{\"id\":\"2\"}\r\n{\"id\":\"3\"}",
        EncodeOptions::default(),
    );
    assert_eq!((ch.rows, ch.blank_lines), (3, 3));
    assert_eq!((0..3).map(|r| ch.line_of_row(r).unwrap()).collect::<Vec<_>>(), vec![2, 5, 6]);
}

#[test]
fn long_lines_are_refused_per_line() {
    let opts = EncodeOptions { max_line_bytes: 12, ..EncodeOptions::default() };
    let ch = encode(vec![col("id", ColumnKind::Text)], "{\"id\":\"1\"}\n{\"id\":\"123456\"}", opts);
    assert_eq!(ch.errors[0].sqlstate, "54000");
    assert_eq!(ch.errors[0].line, 2);
}

#[test]
fn cancel_stops_the_chunk() {
    let enc = RowEncoder::new(vec![col("id", ColumnKind::Text)], EncodeOptions::default()).unwrap();
    let input = "{\"id\":\"1\"}\n".repeat(5000);
    let chunk = LineFramer::new(input.as_bytes(), 1 << 20, 1 << 20).next_chunk().unwrap().unwrap();
    let ch = enc.encode_chunk(&chunk, &AtomicBool::new(true));
    assert!(ch.cancelled);
    assert_eq!(ch.rows, 0);
}

#[test]
fn invalid_mappings_are_refused() {
    let rest_text = ColumnSpec { source: Source::Rest, ..col("r", ColumnKind::Text) };
    assert!(RowEncoder::new(vec![rest_text], EncodeOptions::default()).is_err());
    let r1 = ColumnSpec { source: Source::Rest, ..col("r1", ColumnKind::Jsonb) };
    let r2 = ColumnSpec { source: Source::Rest, ..col("r2", ColumnKind::Jsonb) };
    assert!(RowEncoder::new(vec![r1, r2], EncodeOptions::default()).is_err());
}

#[test]
fn rows_are_tracked_for_rejects() {
    let opts = EncodeOptions { stop_at_first_error: false, track_rows: true, raw_limit: 8, ..EncodeOptions::default() };
    let input = "{\"id\":\"1\"}\r\nnot json at all\n\n{\"id\":\"3\"}\n";
    let ch = encode(vec![col("id", ColumnKind::Text)], input, opts);
    assert_eq!(ch.row_starts.len(), 2);
    assert_eq!(ch.row_offsets, vec![0, 29]);
    assert_eq!(ch.row_end(0), ch.row_starts[1]);
    assert_eq!(ch.errors[0].raw.as_deref(), Some("not json"));
    assert_eq!((ch.errors[0].line, ch.errors[0].offset), (2, 12));
}

#[test]
fn an_unfinished_last_line_waits() {
    let cols = || vec![col("id", ColumnKind::Text)];
    let ch = encode(cols(), "{\"id\":\"1\"}\n{\"id\":\"2", EncodeOptions::default());
    assert!(ch.held_back && ch.errors.is_empty());
    assert_eq!((ch.rows, ch.lines, ch.input_bytes), (1, 1, 11));
    // the held-back line's every byte stays out, a `\r` it ends in included: the next load
    // starts exactly at the line's first byte
    for unfinished in ["{\"id\":\"2", "{\"id\":\"2\r", "{\"id\":\r", "\r{\r"] {
        let text = format!("{{\"id\":\"1\"}}\r\n{unfinished}");
        let ch = encode(cols(), &text, EncodeOptions::default());
        assert!(ch.held_back, "{unfinished:?}");
        assert_eq!((ch.rows, ch.lines, ch.input_bytes), (1, 1, 12), "{unfinished:?}");
    }
    // a finished last line without a newline is loaded
    let ch = encode(cols(), "{\"id\":\"1\"}\n{\"id\":\"2\"}", EncodeOptions::default());
    assert!(!ch.held_back);
    assert_eq!((ch.rows, ch.lines), (2, 2));
    // a broken line with its newline is an error, not a wait
    let ch = encode(cols(), "{\"id\":\"1\"}\n{\"id\":\"2\n", EncodeOptions::default());
    assert!(!ch.held_back);
    assert_eq!(ch.errors[0].line, 2);
    // a complete line that is not valid for its column is an error even at the end
    let ch = encode(cols(), "{\"id\":\"\\u0000\"}", EncodeOptions::default());
    assert!(!ch.held_back && ch.errors.len() == 1);
}

#[test]
fn a_header_names_columns_of_a_target_that_maps_keys_only() {
    use crate::input::Header;
    let input = "[\"id\",\"name\"]\n[1,\"a\"]\n";
    let framed = |header: bool| {
        let mut chunk = LineFramer::new(input.as_bytes(), 1 << 20, 1 << 20).next_chunk().unwrap().unwrap();
        if header {
            let names = vec![(b"id".to_vec(), false), (b"name".to_vec(), false)];
            chunk.header = Some(std::sync::Arc::new(Header { names, line: 1 }));
        }
        chunk
    };
    let keys =
        RowEncoder::new(vec![col("id", ColumnKind::Int8), col("name", ColumnKind::Text)], EncodeOptions::default())
            .unwrap();
    let ch = keys.encode_chunk(&framed(true), &AtomicBool::new(false));
    assert_eq!((ch.rows, ch.blank_lines), (1, 1));
    assert_eq!(decode(&ch, 2), vec![vec![t("\0\0\0\0\0\0\0\x01"), t("a")]]);
    // a column that takes the whole line: the first line is a row, as every other
    let whole = ColumnSpec { source: Source::WholeLine, ..col("doc", ColumnKind::Json) };
    let lines = RowEncoder::new(vec![whole], EncodeOptions::default()).unwrap();
    let ch = lines.encode_chunk(&framed(true), &AtomicBool::new(false));
    assert_eq!((ch.rows, ch.blank_lines), (2, 0));
    assert_eq!(decode(&ch, 1), vec![vec![t("[\"id\",\"name\"]")], vec![t("[1,\"a\"]")]]);
}

/// Microseconds since 2000-01-01 of a UTC date and time of day.
fn utc_us(y: i32, m: i32, d: i32, time_us: i64) -> i64 {
    (crate::temporal::date2j(y, m, d) - 2_451_545) * 86_400_000_000 + time_us
}

#[test]
fn event_log_values_are_finished_on_the_threads() {
    let finished = |name: &str, kind: ColumnKind, typmod: i32| ColumnSpec { finished: true, typmod, ..col(name, kind) };
    let cols = vec![
        col("id", ColumnKind::Uuid),
        finished("at", ColumnKind::Timestamptz, -1),
        finished("amount", ColumnKind::Numeric, ((12 << 16) | 2) + 4),
        col("day", ColumnKind::Date),
        col("ok", ColumnKind::Bool),
    ];
    let input = concat!(
        r#"{"id":"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11","at":"2024-05-01T12:30:00.25+02:00","amount":"72754.666","day":"2024-05-01","ok":"t"}"#,
        "\n",
        r#"{"id":"{a0eebc999c0b4ef8bb6d6bb9bd380a11}","at":"2024-05-01 12:30","amount":96822.8,"day":"May 1, 2024","ok":"yes"}"#,
        "\n",
        r#"{"id":"a0ee-bc99","at":"2024-05-01T12:30:00 America/New_York","amount":"1e20"}"#,
    );
    let ch = encode(cols, input, EncodeOptions::default());
    assert!(ch.errors.is_empty(), "{:?}", ch.errors);
    let rows = decode(&ch, 5);
    let uuid = vec![0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11];
    let noon_thirty = (12 * 3600 + 30 * 60) * 1_000_000i64;
    assert_eq!(
        rows[0],
        vec![
            F::B(uuid.clone()),
            F::B((utc_us(2024, 5, 1, noon_thirty + 250_000) - 2 * 3_600_000_000).to_be_bytes().to_vec()),
            F::D(crate::numeric::numeric_datum(b"72754.67").unwrap()),
            F::B(((crate::temporal::date2j(2024, 5, 1) - 2_451_545) as i32).to_be_bytes().to_vec()),
            F::B(vec![1]),
        ]
    );
    assert_eq!(
        rows[1],
        vec![
            F::B(uuid),
            F::Local(utc_us(2024, 5, 1, noon_thirty), "2024-05-01 12:30".into()),
            F::D(crate::numeric::numeric_datum(b"96822.80").unwrap()),
            F::In("May 1, 2024".into()),
            F::In("yes".into()),
        ]
    );
    // what no fast path fully understands, PostgreSQL decides (an overflow included)
    assert_eq!(
        rows[2],
        vec![
            F::In("a0ee-bc99".into()),
            F::In("2024-05-01T12:30:00 America/New_York".into()),
            F::In("1e20".into()),
            F::Null,
            F::Null
        ]
    );
    assert_eq!(ch.checked_rows, vec![1, 2]);
}

#[test]
fn varchar_and_character_lengths_are_applied_as_postgres_applies_them() {
    let finished =
        |name: &str, kind: ColumnKind, n: i32| ColumnSpec { finished: true, typmod: n + 4, ..col(name, kind) };
    let cols = vec![finished("v", ColumnKind::Text, 3), finished("c", ColumnKind::Bpchar, 3)];
    let text_datum = |s: &str| {
        let mut d = crate::numeric::varlena_header(s.len() + 4).to_vec();
        d.extend_from_slice(s.as_bytes());
        F::D(d)
    };
    // (the JSON string, what varchar(3) stores, what character(3) stores); None: PostgreSQL decides
    let cases: [(&str, Option<&str>, Option<&str>); 8] = [
        ("ab", Some("ab"), Some("ab ")),
        ("", Some(""), Some("   ")),
        ("日本語", Some("日本語"), Some("日本語")),
        ("é🎉", Some("é🎉"), Some("é🎉 ")),
        ("abc   ", Some("abc"), Some("abc")),
        ("a\\tb  ", Some("a\tb"), Some("a\tb")),
        ("日本語 x", None, None),
        ("abcd", None, None),
    ];
    let input: String = cases.iter().map(|(s, _, _)| format!("{{\"v\":\"{s}\",\"c\":\"{s}\"}}\n")).collect();
    let ch = encode(cols, &input, EncodeOptions::default());
    assert!(ch.errors.is_empty(), "{:?}", ch.errors);
    for (row, (s, varchar, bpchar)) in decode(&ch, 2).iter().zip(cases) {
        let decoded = s.replace("\\t", "\t");
        let want = |stored: Option<&str>| stored.map(text_datum).unwrap_or_else(|| t(&decoded));
        assert_eq!(row, &vec![want(varchar), want(bpchar)], "{s}");
    }
    assert_eq!(ch.checked_rows, vec![6, 7]);
}
