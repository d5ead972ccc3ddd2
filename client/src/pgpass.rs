//! Passwords from a libpq password file (`PGPASSFILE`, else `~/.pgpass`).
//!
//! Each line is `hostname:port:database:username:password`; `*` matches anything, `\:` and `\\`
//! escape, `#` starts a comment line, and the first matching line wins. As libpq does, a file
//! that others may read is ignored with a warning, and a Unix-socket connection matches the
//! host `localhost`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The password file libpq would read.
pub fn default_path(var: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match var("PGPASSFILE") {
        Some(p) => Some(PathBuf::from(p)),
        None => var("HOME").map(|h| Path::new(&h).join(".pgpass")),
    }
}

/// The password for this connection from the file at `path`, if it has one.
pub fn lookup(path: &Path, host: &str, port: u16, database: &str, user: &str) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "pg-ingest: warning: password file \"{}\" has group or world access; permissions should be u=rw (0600) \
             or less",
            path.display()
        );
        return None;
    }
    let text = fs::read_to_string(path).ok()?;
    find(&text, host, port, database, user)
}

/// The first matching line's password.
pub fn find(text: &str, host: &str, port: u16, database: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), database, user];
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).find_map(|line| {
        let fields = fields(line);
        if fields.len() < 5 {
            return None;
        }
        let matches = wanted.iter().zip(&fields).all(|(want, field)| field == "*" || field == want);
        matches.then(|| fields[4].clone())
    })
}

/// A line's fields, unescaped; the fifth (the password) takes the rest of the line.
fn fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().unwrap().push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_line_wins() {
        let text = "# comment\n\
                    db.example:5432:app:alice:first\n\
                    *:5432:*:alice:second\n\
                    *:*:*:*:fallback\n";
        assert_eq!(find(text, "db.example", 5432, "app", "alice").as_deref(), Some("first"));
        assert_eq!(find(text, "other", 5432, "app", "alice").as_deref(), Some("second"));
        assert_eq!(find(text, "other", 6000, "app", "alice").as_deref(), Some("fallback"));
        assert_eq!(find("h:1:d:u:pw\n", "h", 2, "d", "u"), None);
    }

    #[test]
    fn escapes_and_colons_in_passwords() {
        let text = r"h\:x:5432:d:u\\v:pa\:ss:word";
        assert_eq!(find(text, "h:x", 5432, "d", r"u\v").as_deref(), Some("pa:ss:word"));
    }

    #[test]
    fn readable_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        fs::write(&path, "*:*:*:*:secret\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(lookup(&path, "h", 5432, "d", "u"), None);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&path, "h", 5432, "d", "u").as_deref(), Some("secret"));
    }
}
