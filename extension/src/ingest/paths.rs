//! The files a path names: itself, or, when it is a glob (`/data/in/*.jsonl`), every regular
//! file matching it, in name order.

use pgrx::PgSqlErrorCode;

use crate::error::IngestError;

/// Whether `path` is a pattern rather than a file name.
pub fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// The files to load for `path`. A pattern matching nothing gives none (with a NOTICE): a
/// scheduled load of an empty directory is not an error.
pub fn expand(path: &str) -> Vec<String> {
    if !is_glob(path) {
        return vec![path.to_owned()];
    }
    let options =
        glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: true };
    let matches = glob::glob_with(path, options).unwrap_or_else(|e| {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid file pattern \"{path}\": {e}"),
        )
        .raise()
    });
    let mut files: Vec<String> =
        matches.filter_map(Result::ok).filter(|p| p.is_file()).filter_map(|p| p.to_str().map(str::to_owned)).collect();
    files.sort();
    if files.is_empty() {
        pgrx::notice!("no file matches \"{path}\": nothing to load");
    }
    files
}
