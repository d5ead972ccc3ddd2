//! Which part of a JSON line goes to which column.
//!
//! - By default each top-level key goes to the column of the same name: an exact match first,
//!   else a unique case-insensitive one.
//! - A path (`"meta.client"`, `"meta.tags[0]"`, `"$"` for the whole line) sends what it
//!   points at to a column instead.
//! - One jsonb column can be the *rest* column: it receives every top-level key that no
//!   column takes, as an object.

use std::collections::HashMap;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The top-level key of the column's name (exact, else unique case-insensitive match).
    Key,
    /// A path: a top-level key, then keys and array indexes below it.
    Path(Vec<PathStep>),
    /// The whole line.
    WholeLine,
    /// All top-level keys no other column takes, as an object.
    Rest,
}

/// Parses `meta.client`, `meta.tags[0]`, `a[1][2].b`, or `$` (the whole line; `$.a.b` is the
/// same as `a.b`). Keys with dots or brackets are written `["a.b"]`.
pub fn parse_path(path: &str) -> Result<Source, String> {
    let p = path.trim();
    if p == "$" {
        return Ok(Source::WholeLine);
    }
    let p = p.strip_prefix("$.").or_else(|| p.strip_prefix('$').filter(|r| r.starts_with('['))).unwrap_or(p);
    let bad = |why: &str| Err(format!("invalid JSON path \"{path}\": {why}"));
    let mut steps = Vec::new();
    let b = p.as_bytes();
    let mut i = 0;
    let mut expect_key = true;
    while i < b.len() {
        match b[i] {
            b'[' => {
                let close = match p[i..].find(']') {
                    Some(c) => i + c,
                    None => return bad("unclosed '['"),
                };
                let inner = p[i + 1..close].trim();
                if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    steps.push(PathStep::Key(q.to_owned()));
                } else {
                    match inner.parse::<usize>() {
                        Ok(n) => steps.push(PathStep::Index(n)),
                        Err(_) => return bad("an index must be a number or a quoted key"),
                    }
                }
                i = close + 1;
                expect_key = false;
            }
            b'.' if !expect_key => {
                i += 1;
                expect_key = true;
            }
            _ if expect_key => {
                let end = p[i..].find(['.', '[']).map(|e| i + e).unwrap_or(p.len());
                if end == i {
                    return bad("empty key");
                }
                steps.push(PathStep::Key(p[i..end].to_owned()));
                i = end;
                expect_key = false;
            }
            _ => return bad("expected '.' or '['"),
        }
    }
    if expect_key && !steps.is_empty() {
        return bad("ends with '.'");
    }
    match steps.first() {
        None => bad("empty"),
        Some(PathStep::Index(_)) => bad("must start with a key"),
        Some(PathStep::Key(_)) => Ok(Source::Path(steps)),
    }
}

/// Finds the column for a top-level key: exact name first, else a unique case-insensitive
/// match. Only columns whose source is [`Source::Key`] take part.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    exact: HashMap<Box<[u8]>, usize>,
    /// lower-cased name → column, or `None` where two columns fold to the same name.
    folded: HashMap<String, Option<usize>>,
}

/// How a key matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    Exact(usize),
    Folded(usize),
}

impl KeyIndex {
    pub fn new<'a>(names: impl IntoIterator<Item = (usize, &'a str)>) -> Self {
        let mut idx = Self::default();
        for (col, name) in names {
            idx.exact.insert(name.as_bytes().into(), col);
            idx.folded.entry(name.to_lowercase()).and_modify(|e| *e = None).or_insert(Some(col));
        }
        idx
    }

    pub fn find(&self, key: &[u8]) -> Option<KeyMatch> {
        if let Some(&c) = self.exact.get(key) {
            return Some(KeyMatch::Exact(c));
        }
        let key = std::str::from_utf8(key).ok()?;
        self.folded.get(&key.to_lowercase()).copied().flatten().map(KeyMatch::Folded)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathStep::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("$"), Ok(Source::WholeLine));
        assert_eq!(parse_path("timestamp"), Ok(Source::Path(vec![Key("timestamp".into())])));
        assert_eq!(parse_path("meta.client"), Ok(Source::Path(vec![Key("meta".into()), Key("client".into())])));
        assert_eq!(
            parse_path("$.meta.tags[0]"),
            Ok(Source::Path(vec![Key("meta".into()), Key("tags".into()), Index(0)]))
        );
        assert_eq!(
            parse_path("a[1][2].b"),
            Ok(Source::Path(vec![Key("a".into()), Index(1), Index(2), Key("b".into())]))
        );
        assert_eq!(parse_path(r#"["a.b"].c"#), Ok(Source::Path(vec![Key("a.b".into()), Key("c".into())])));
        for bad in ["", "a.", ".a", "a..b", "a[x]", "a[1", "[0]", "a[0]x"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_then_unique_case_insensitive() {
        let idx = KeyIndex::new([(0, "id"), (1, "Name"), (2, "name"), (3, "Site")]);
        assert_eq!(idx.find(b"id"), Some(KeyMatch::Exact(0)));
        assert_eq!(idx.find(b"ID"), Some(KeyMatch::Folded(0)));
        assert_eq!(idx.find(b"Name"), Some(KeyMatch::Exact(1)));
        assert_eq!(idx.find(b"name"), Some(KeyMatch::Exact(2)));
        assert_eq!(idx.find(b"NAME"), None, "ambiguous: Name and name");
        assert_eq!(idx.find(b"site"), Some(KeyMatch::Folded(3)));
        assert_eq!(idx.find(b"other"), None);
    }
}
