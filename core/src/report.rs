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

/// A running load's numbers, as the extension sends them in a progress NOTICE's DETAIL (with
/// `pg_ingest.progress_notices = interval`) and a client reads them back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressReport {
    pub load_id: i64,
    /// File offset reached, from the start of the file.
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Where this load began in the file (> 0 when appending).
    pub start_offset: u64,
    pub lines: u64,
    pub rows: u64,
    pub rejected: u64,
    pub seconds: f64,
}

impl ProgressReport {
    const PREFIX: &'static str = "pg_ingest progress:";

    /// The DETAIL text: the prefix, then `key=value` pairs.
    pub fn to_detail(&self) -> String {
        format!(
            "{} load_id={} bytes_done={} bytes_total={} start_offset={} lines={} rows={} rejected={} seconds={:.3}",
            Self::PREFIX,
            self.load_id,
            self.bytes_done,
            self.bytes_total,
            self.start_offset,
            self.lines,
            self.rows,
            self.rejected,
            self.seconds
        )
    }

    /// Reads a DETAIL back; `None` when it is not a progress report.
    pub fn from_detail(detail: &str) -> Option<Self> {
        let pairs = detail.strip_prefix(Self::PREFIX)?;
        let mut r = Self::default();
        for pair in pairs.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            match key {
                "load_id" => r.load_id = value.parse().ok()?,
                "bytes_done" => r.bytes_done = value.parse().ok()?,
                "bytes_total" => r.bytes_total = value.parse().ok()?,
                "start_offset" => r.start_offset = value.parse().ok()?,
                "lines" => r.lines = value.parse().ok()?,
                "rows" => r.rows = value.parse().ok()?,
                "rejected" => r.rejected = value.parse().ok()?,
                "seconds" => r.seconds = value.parse().ok()?,
                _ => {} // keys added later
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::ProgressReport;

    #[test]
    fn progress_detail_round_trips() {
        let r = ProgressReport {
            load_id: 12,
            bytes_done: 210_318_848,
            bytes_total: 457_000_000,
            start_offset: 100,
            lines: 900_000,
            rows: 899_990,
            rejected: 10,
            seconds: 1.5,
        };
        assert_eq!(ProgressReport::from_detail(&r.to_detail()), Some(r));
        assert_eq!(ProgressReport::from_detail("Key (id)=(1) already exists."), None);
        assert_eq!(ProgressReport::from_detail("pg_ingest progress: lines=x"), None);
    }
}
