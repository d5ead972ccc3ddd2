//! The Citus cluster of the Citus tests: the coordinator that `scripts/citus.sh start` runs
//! (`PG_INGEST_CITUS_PORT`; the tests are skipped with a message without it).

use postgres::{Client, NoTls};

/// One test at a time: Citus DDL (create_distributed_table) of two sessions at once can fail.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A session on the coordinator (statement_timeout 120 s: nothing waits forever), or `None`
/// with a message when there is no Citus cluster.
pub fn coordinator() -> Option<Client> {
    let Ok(port) = std::env::var("PG_INGEST_CITUS_PORT") else {
        eprintln!(
            "Citus tests skipped: no Citus cluster (PG_INGEST_CITUS_PORT unset). `scripts/citus.sh start` builds Citus \
             from citus-13.2.2.tar.gz (set CITUS_TARBALL) and starts a coordinator and two workers."
        );
        return None;
    };
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres options='-c statement_timeout=120s'");
    Some(Client::connect(&dsn, NoTls).expect("the Citus coordinator"))
}

pub fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// Rows in the table's shards, counted on the workers.
pub fn rows_in_shards(c: &mut Client, table: &str) -> i64 {
    count(
        c,
        &format!("SELECT coalesce(sum(result::bigint), 0)::bigint FROM run_command_on_shards('{table}', 'SELECT count(*) FROM %s')"),
    )
}

/// psql on the coordinator, running `command` (`-c`), with `env` set.
pub fn psql_with(command: &str, env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(crate::pg_program("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
        .args(["-p", &std::env::var("PG_INGEST_CITUS_PORT").unwrap(), "-c", command])
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// psql on the coordinator, running `command` (`-c`).
pub fn psql(command: &str) -> std::process::Output {
    psql_with(command, &[])
}
