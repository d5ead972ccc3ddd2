//! Splits a SQL script into statements the way psql does: at semicolons outside string
//! literals ('…', E'…' with backslash escapes), quoted identifiers, dollar quotes ($tag$…$tag$),
//! comments (-- and nested /* */), and `BEGIN ATOMIC … END` / `CASE … END` bodies.

/// The script's statements, each from its first token to before its terminating semicolon
/// (comments before it are left out); statements that are only comments are left out.
pub fn split(script: &str) -> Vec<String> {
    let bytes = script.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // psql's rule: BEGIN or CASE that is not a statement's first word opens a block, END
    // closes one; a semicolon inside a block does not end the statement.
    let mut words = 0usize;
    let mut depth = 0usize;
    let mut has_code = false;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..].iter().position(|&c| c == b'\n').map_or(bytes.len(), |p| i + p + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i);
                continue;
            }
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !is_word_byte(bytes, i.wrapping_sub(2));
                code_starts(&mut has_code, &mut start, i);
                i = skip_quoted(bytes, i, b'\'', escapes);
                continue;
            }
            b'"' => {
                code_starts(&mut has_code, &mut start, i);
                i = skip_quoted(bytes, i, b'"', false);
                words += 1;
                continue;
            }
            b'$' => {
                if let Some(end) = skip_dollar_quote(bytes, i) {
                    code_starts(&mut has_code, &mut start, i);
                    i = end;
                    continue;
                }
            }
            b';' if depth == 0 => {
                if has_code {
                    statements.push(script[start..i].trim().to_owned());
                }
                i += 1;
                start = i;
                words = 0;
                has_code = false;
                continue;
            }
            _ if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                let end = i + bytes[i..].iter().position(|&c| !is_ident_byte(c)).unwrap_or(bytes.len() - i);
                let word = &script[i..end];
                words += 1;
                if word.eq_ignore_ascii_case("begin") || word.eq_ignore_ascii_case("case") {
                    if words > 1 {
                        depth += 1;
                    }
                } else if word.eq_ignore_ascii_case("end") {
                    depth = depth.saturating_sub(1);
                }
                code_starts(&mut has_code, &mut start, i);
                i = end;
                continue;
            }
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            code_starts(&mut has_code, &mut start, i);
        }
        i += 1;
    }
    if has_code {
        statements.push(script[start..].trim().to_owned());
    }
    statements
}

/// Marks where the statement's first token is.
fn code_starts(has_code: &mut bool, start: &mut usize, i: usize) {
    if !*has_code {
        *has_code = true;
        *start = i;
    }
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Whether `bytes[i]` exists and continues a word (so an `E` before a quote is part of it).
fn is_word_byte(bytes: &[u8], i: usize) -> bool {
    bytes.get(i).is_some_and(|&c| is_ident_byte(c))
}

/// Past a `/* … */` comment starting at `i`; they nest.
fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Past a literal quoted with `q` starting at `i`: a doubled quote stays inside, and with
/// `escapes` so does a backslash-escaped character.
fn skip_quoted(bytes: &[u8], mut i: usize, q: u8, escapes: bool) -> usize {
    i += 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            c if c == q => {
                if bytes.get(i + 1) == Some(&q) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past a dollar-quoted string starting at `i`, if `$` opens one (`$$` or `$tag$`, where a
/// tag is an identifier not starting with a digit; `$1` is a parameter).
fn skip_dollar_quote(bytes: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_ident_byte(bytes[i - 1]) {
        return None; // part of an identifier such as a$b
    }
    let tag_len = bytes[i + 1..].iter().position(|&c| c == b'$')?;
    let tag = &bytes[i + 1..i + 1 + tag_len];
    if tag.first().is_some_and(|c| c.is_ascii_digit()) || !tag.iter().all(|&c| is_ident_byte(c) && c != b'$') {
        return None;
    }
    let delimiter = &bytes[i..i + tag_len + 2];
    let body = i + delimiter.len();
    let end = bytes[body..].windows(delimiter.len()).position(|w| w == delimiter);
    Some(end.map_or(bytes.len(), |p| body + p + delimiter.len()))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn plain_statements() {
        assert_eq!(split("SELECT 1; SELECT 2;\n\nSELECT 3"), ["SELECT 1", "SELECT 2", "SELECT 3"]);
        assert_eq!(split(" ; ;\n-- only a comment\n/* and another */ ;"), Vec::<String>::new());
    }

    #[test]
    fn semicolons_inside_literals_and_comments_stay() {
        let script = r#"
            INSERT INTO t VALUES ('a;b', 'it''s;');  -- a comment; with a semicolon
            SELECT E'\';' AS x;
            SELECT "odd;name" FROM "t""; y";
            /* block; /* nested; */ still; */ SELECT 4;
            SELECT $$ ; $$, $fn$ $$ ; $fn$;
            SELECT 'no E\'; SELECT 5;
        "#;
        assert_eq!(
            split(script),
            [
                "INSERT INTO t VALUES ('a;b', 'it''s;')",
                r"SELECT E'\';' AS x",
                r#"SELECT "odd;name" FROM "t""; y""#,
                "SELECT 4",
                "SELECT $$ ; $$, $fn$ $$ ; $fn$",
                r"SELECT 'no E\'",
                "SELECT 5",
            ]
        );
    }

    #[test]
    fn dollar_quoted_function_bodies() {
        let script = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  RETURN 1;\nEND;\n$body$;\nSELECT f();";
        let s = split(script);
        assert_eq!(s.len(), 2);
        assert!(s[0].ends_with("$body$"));
        assert_eq!(s[1], "SELECT f()");
    }

    #[test]
    fn parameters_and_identifiers_with_dollars_are_not_quotes() {
        assert_eq!(
            split("PREPARE p AS SELECT $1; SELECT a$b FROM t;"),
            ["PREPARE p AS SELECT $1", "SELECT a$b FROM t"]
        );
    }

    #[test]
    fn begin_atomic_and_case_blocks() {
        let script = "CREATE FUNCTION g(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT x + 1; SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; END;\nBEGIN; SELECT 1; COMMIT;";
        assert_eq!(
            split(script),
            [
                "CREATE FUNCTION g(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT x + 1; SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; END",
                "BEGIN",
                "SELECT 1",
                "COMMIT",
            ]
        );
    }

    #[test]
    fn unterminated_things_run_to_the_end() {
        assert_eq!(split("SELECT 'open; SELECT 2"), ["SELECT 'open; SELECT 2"]);
        assert_eq!(split("SELECT 1 /* open; "), ["SELECT 1 /* open;"]);
    }
}
