use super::*;
use proptest::prelude::*;

fn ok(s: &str) -> Kind {
    parse_value(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}")).kind
}

fn bad(s: &str) -> JsonError {
    parse_value(s.as_bytes()).expect_err(s)
}

#[test]
fn accepts_what_json_accepts() {
    assert_eq!(ok("null"), Kind::Null);
    assert_eq!(ok(" true "), Kind::Bool(true));
    assert_eq!(ok("-0.5e+10"), Kind::Number);
    assert_eq!(ok(r#""a\"b""#), Kind::String { escaped: true });
    assert_eq!(ok(r#""plain""#), Kind::String { escaped: false });
    assert_eq!(ok(r#"{"a":[1,{"b":[]},"x"],"c":{}}"#), Kind::Object);
    assert_eq!(ok("[[],[[]]]"), Kind::Array);
}

#[test]
fn refuses_what_json_refuses_with_a_position() {
    for s in [
        "",
        "{",
        "{\"a\"}",
        "{\"a\":1,}",
        "[1,]",
        "[,1]",
        "01",
        "1.",
        "-",
        "1e",
        "tru",
        "{a:1}",
        "\"\t\"",
        "\"\\x\"",
        "\"\\u12\"",
        "[1 2]",
        "{} x",
        "\"abc",
        "{\"a\":1 \"b\":2}",
        "]",
    ] {
        bad(s);
    }
    let e = bad(r#"{"a" 1}"#);
    assert_eq!(e.offset, 5);
    assert_eq!(e.to_string(), "expected \":\", found \"1\" at character 6");
}

#[test]
fn deep_nesting_does_not_recurse() {
    let deep = "[".repeat(200_000) + &"]".repeat(200_000);
    assert_eq!(ok(&deep), Kind::Array);
    assert!(parse_value(("[".repeat(200_000) + "]").as_bytes()).is_err());
}

#[test]
fn object_members_come_in_order_with_raw_values() {
    let line = br#" {"id": "x", "n": 505874924095815681, "o": {"k": [1, 2]}, "e\u0041": null} "#;
    let mut seen = Vec::new();
    let r = parse_object(line, |k, esc, v| {
        seen.push((String::from_utf8(k.to_vec()).unwrap(), esc, v.kind, String::from_utf8(v.raw.to_vec()).unwrap()))
    });
    assert_eq!(r, Ok(None));
    assert_eq!(
        seen,
        vec![
            ("id".into(), false, Kind::String { escaped: false }, "\"x\"".into()),
            ("n".into(), false, Kind::Number, "505874924095815681".into()),
            ("o".into(), false, Kind::Object, "{\"k\": [1, 2]}".into()),
            ("e\\u0041".into(), true, Kind::Null, "null".into()),
        ]
    );
    assert_eq!(parse_object(b"[1]", |_, _, _| panic!()), Ok(Some(Kind::Array)));
    assert!(parse_object(b"{\"a\":1} {}", |_, _, _| {}).is_err());
}

#[test]
fn unescapes_like_postgres() {
    let text =
        |s: &str| parse_value(s.as_bytes()).unwrap().string_text().map(|c| String::from_utf8(c.into_owned()).unwrap());
    assert_eq!(text(r#""a\"b\\c\/d\n\t""#).unwrap(), "a\"b\\c/d\n\t");
    assert_eq!(text(r#""\u00e9\ud83c\udf89""#).unwrap(), "é🎉");
    assert_eq!(text(r#""\u0000""#), Err(UnescapeError::Nul));
    assert_eq!(text(r#""\ud83c""#), Err(UnescapeError::LoneSurrogate));
    assert_eq!(text(r#""\udf89x""#), Err(UnescapeError::LoneSurrogate));
}

#[test]
fn array_elements_in_order() {
    let v = parse_value(br#"[1, "a", [2], {"b": 3}, null]"#).unwrap();
    let raws: Vec<&[u8]> = array_elements(v.raw).map(|e| e.raw).collect();
    assert_eq!(raws, vec![&b"1"[..], b"\"a\"", b"[2]", b"{\"b\": 3}", b"null"]);
    assert_eq!(array_elements(b"[]").count(), 0);
    assert_eq!(array_elements(b"[ ]").count(), 0);
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
        "\\PC*".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn agrees_with_serde_json_on_valid_documents(v in arb_json(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { serde_json::to_string(&v).unwrap() };
        let parsed = parse_value(text.as_bytes());
        prop_assert!(parsed.is_ok(), "{}: {:?}", text, parsed);
        if let serde_json::Value::String(s) = &v {
            if !s.contains('\0') {
                let got = parsed.unwrap().string_text().unwrap().into_owned();
                prop_assert_eq!(got, s.as_bytes().to_vec());
            }
        }
    }

    #[test]
    fn agrees_with_serde_json_on_arbitrary_text(s in "[\\[\\]{}\",:0-9a-z\\\\. -]{0,24}") {
        let ours = parse_value(s.as_bytes()).is_ok();
        // serde_json also refuses lone surrogates while scanning; we refuse them when decoding
        prop_assume!(!s.contains("\\u"));
        let theirs = serde_json::from_str::<serde_json::Value>(&s).is_ok();
        prop_assert_eq!(ours, theirs, "{}", s);
    }

    #[test]
    fn the_vector_string_scan_stops_where_a_byte_scan_stops(bytes in proptest::collection::vec(
        prop_oneof![Just(b'"'), Just(b'\\'), Just(0x1fu8), Just(0x20u8), Just(0x7fu8), Just(0x80u8), any::<u8>(),
                    Just(b'a'), Just(b'a'), Just(b'a'), Just(b'a')], 0..80)) {
        let scalar = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(bytes.len());
        prop_assert_eq!(string_run(&bytes), scalar);
    }
}

#[test]
fn nesting_deeper_than_the_bit_set_is_checked_as_closely() {
    for depth in [63usize, 64, 65, 130, 131] {
        let open: String = (0..depth).map(|i| if i % 3 == 0 { "{\"k\":" } else { "[" }).collect();
        let close: String = (0..depth).rev().map(|i| if i % 3 == 0 { "}" } else { "]" }).collect();
        let ok = format!("{open}1{close}");
        assert!(parse_value(ok.as_bytes()).is_ok(), "depth {depth}");
        // the innermost and the outermost closer swapped: refused at any depth
        let mut bad = close.clone().into_bytes();
        let last = bad.len() - 1;
        bad.swap(0, last);
        if bad[0] != bad[last] {
            let bad = format!("{open}1{}", String::from_utf8(bad).unwrap());
            assert!(parse_value(bad.as_bytes()).is_err(), "depth {depth}");
        }
    }
}

#[test]
fn nesting_depth_is_counted_outside_strings() {
    assert!(!nests_deeper_than(b"[[1]]", 2));
    assert!(nests_deeper_than(b"[[[1]]]", 2));
    assert!(!nests_deeper_than(br#"{"a":"[[[[\"[[[","b":[1]}"#, 2));
    assert!(nests_deeper_than(br#"{"a":"x\\","b":[[1]]}"#, 2));
}
