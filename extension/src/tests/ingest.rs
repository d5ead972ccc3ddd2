//! ingest_jsonl inside a backend. The tests run as the server's OS user, so the files they
//! write are readable by the server.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn file(name: &str, content: &str) -> String {
        let dir = std::env::temp_dir().join(format!("pg_ingest_pg_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[pg_test]
    fn loads_rows_with_per_row_defaults_and_domains() {
        Spi::run(
            "CREATE DOMAIN pos AS int CHECK (VALUE > 0); \
             CREATE TABLE t (id serial, n pos, label text DEFAULT 'none', at timestamptz DEFAULT now())",
        )
        .unwrap();
        let path = file("t.jsonl", "{\"n\": 1}\n\n{\"n\": \"2\", \"label\": \"x\"}\n");
        let (lines, inserted, skipped) = Spi::get_three_with_args::<i64, i64, i64>(
            "SELECT lines, rows_inserted, lines_skipped FROM ingest_jsonl($1, 't')",
            &[path.as_str().into()],
        )
        .unwrap();
        assert_eq!((lines, inserted, skipped), (Some(3), Some(2), Some(1)));
        let got = Spi::get_one::<String>(
            "SELECT string_agg(id || ':' || n || ':' || label, ',' ORDER BY id) FROM t WHERE at = now()",
        )
        .unwrap();
        assert_eq!(got.as_deref(), Some("1:1:none,2:2:x"));
    }

    #[pg_test(
        error = "/tmp/pg_ingest_pg_test_bad/bad.jsonl: line 2, column \"n\": value for domain pos violates check constraint \"pos_check\""
    )]
    fn a_domain_check_names_line_and_column() {
        Spi::run("CREATE DOMAIN pos AS int CHECK (VALUE > 0); CREATE TABLE t (n pos)").unwrap();
        std::fs::create_dir_all("/tmp/pg_ingest_pg_test_bad").unwrap();
        std::fs::write("/tmp/pg_ingest_pg_test_bad/bad.jsonl", "{\"n\": 1}\n{\"n\": -1}\n").unwrap();
        Spi::run("SELECT * FROM ingest_jsonl('/tmp/pg_ingest_pg_test_bad/bad.jsonl', 't')").unwrap();
    }

    #[pg_test(error = "permission denied to read a file on the server")]
    fn non_superusers_need_pg_read_server_files() {
        Spi::run(
            "CREATE ROLE pgi_nobody; CREATE TABLE t (n int); GRANT INSERT ON t TO pgi_nobody; SET ROLE pgi_nobody",
        )
        .unwrap();
        Spi::run("SELECT * FROM ingest_jsonl('/tmp/whatever.jsonl', 't')").unwrap();
    }
}
