//! What a load reports: the row `ingest_jsonl` returns, as the extension builds it and as a
//! client reads it back.

/// One file's load. `lines = rows_inserted + rows_rejected + lines_skipped`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSummary {
    pub file: String,
    /// The table, schema-qualified.
    pub target: String,
    /// `loaded`, `appended` or `unchanged`.
    pub status: String,
    pub lines: i64,
    pub rows_inserted: i64,
    pub rows_rejected: i64,
    /// Blank lines, and rows a BEFORE trigger chose not to insert.
    pub lines_skipped: i64,
    pub bytes: i64,
    pub seconds: f64,
    /// The load's id in `ingest.loads` (and `ingest.rejects`).
    pub load_id: i64,
}
