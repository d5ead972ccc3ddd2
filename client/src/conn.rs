//! Connection settings the way libpq users expect them: a DSN (URL or key=value) from `--dsn`
//! or `DATABASE_URL`, with whatever it leaves out taken from PGHOST, PGPORT, PGUSER,
//! PGDATABASE, PGPASSWORD, PGAPPNAME, PGCONNECT_TIMEOUT and the PGSSL* variables, then the
//! password file, then libpq's own defaults. TLS is in [`crate::tls`].

use std::env;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use postgres::config::Host;
use postgres::error::DbError;
use postgres::{Client, Config};
use postgres_openssl::MakeTlsConnector;

use crate::pgpass;
use crate::tls::TlsOptions;

/// Resolved connection settings.
#[derive(Debug, Clone)]
pub struct Settings {
    config: Config,
    tls: TlsOptions,
}

/// Bad connection settings: a usage error (exit code 2), not a failure to connect.
#[derive(Debug)]
pub struct InvalidSettings(pub String);

impl std::fmt::Display for InvalidSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidSettings {}

/// Debian's libpq looks for the server's socket here when no host is given.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

impl Settings {
    /// Builds the settings from an optional DSN and the environment.
    pub fn resolve(dsn: Option<&str>) -> anyhow::Result<Self> {
        Self::resolve_with(dsn, |name| env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// As [`Settings::resolve`], with the environment given as a lookup (for tests).
    pub fn resolve_with(dsn: Option<&str>, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let invalid = |e: String| anyhow::Error::new(InvalidSettings(format!("invalid connection string: {e}")));
        let (mut config, tls_keys) = match dsn {
            Some(dsn) => {
                let (rest, keys) = crate::tls::take_keys(dsn).map_err(|e| invalid(e.to_string()))?;
                (Config::from_str(&rest).map_err(|e| invalid(e.to_string()))?, keys)
            }
            None => (Config::new(), Vec::new()),
        };
        let tls = TlsOptions::resolve(&tls_keys, &var).map_err(|e| invalid(e.to_string()))?;
        config.ssl_mode(tls.mode.wire());
        if config.get_hosts().is_empty() {
            match var("PGHOST") {
                Some(hosts) => {
                    for host in hosts.split(',') {
                        config.host(host.trim());
                    }
                }
                None if Path::new(DEFAULT_SOCKET_DIR).is_dir() => {
                    config.host(DEFAULT_SOCKET_DIR);
                }
                None => {
                    config.host("localhost");
                }
            }
        }
        if config.get_ports().is_empty() {
            if let Some(port) = var("PGPORT") {
                let port: u16 = port
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::Error::new(InvalidSettings(format!("invalid PGPORT {port:?}"))))?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = var("PGUSER").or_else(|| var("USER")).unwrap_or_else(|| "postgres".to_owned());
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let db = var("PGDATABASE").unwrap_or_else(|| config.get_user().unwrap_or("postgres").to_owned());
            config.dbname(&db);
        }
        if config.get_password().is_none() {
            if let Some(pw) = var("PGPASSWORD") {
                config.password(pw);
            } else if let Some(file) = pgpass::default_path(&var) {
                let host = match config.get_hosts().first() {
                    Some(Host::Tcp(h)) => h.clone(),
                    _ => "localhost".to_owned(),
                };
                let port = config.get_ports().first().copied().unwrap_or(5432);
                let (db, user) = (config.get_dbname().unwrap_or(""), config.get_user().unwrap_or(""));
                if let Some(pw) = pgpass::lookup(&file, &host, port, db, user) {
                    config.password(pw);
                }
            }
        }
        if config.get_application_name().is_none() {
            config.application_name(&var("PGAPPNAME").unwrap_or_else(|| "pg-ingest".to_owned()));
        }
        if config.get_connect_timeout().is_none() {
            if let Some(secs) = var("PGCONNECT_TIMEOUT").and_then(|s| s.trim().parse::<u64>().ok()) {
                if secs > 0 {
                    config.connect_timeout(Duration::from_secs(secs.max(2)));
                }
            }
        }
        Ok(Self { config, tls })
    }

    /// `host:port/database` (or the socket directory), for messages.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "?".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self.config.get_dbname().unwrap_or("?");
        format!("{host}:{port}/{db}")
    }

    pub fn connect(&self) -> anyhow::Result<Client> {
        self.connect_with_notices(|_| {})
    }

    /// Connects; the server's NOTICEs and WARNINGs go to `on_notice` as they arrive.
    pub fn connect_with_notices(&self, on_notice: impl Fn(DbError) + Send + Sync + 'static) -> anyhow::Result<Client> {
        let mut config = self.config.clone();
        config.notice_callback(on_notice);
        config.connect(self.tls_connector()?).with_context(|| format!("cannot connect to {}", self.describe()))
    }

    /// The TLS connector (also what a cancel request goes through).
    pub fn tls_connector(&self) -> anyhow::Result<MakeTlsConnector> {
        self.tls.connector()
    }

    #[cfg(test)]
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// A server message with its DETAIL and HINT, on one line.
pub fn db_line(db: &DbError) -> String {
    let mut line = db.message().to_owned();
    if let Some(detail) = db.detail() {
        line.push_str(&format!(" DETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        line.push_str(&format!(" HINT: {hint}"));
    }
    line
}

/// One clear line for an error: the server's message with its SQLSTATE, DETAIL and HINT when
/// the server sent them, else the chain of causes.
pub fn describe_error(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(db) = cause.downcast_ref::<postgres::Error>().and_then(|pe| pe.as_db_error()) {
            return format!("{} ({}): {}", db.severity(), db.code().code(), db_line(db));
        }
    }
    // Causes often repeat the text of the one they come from: keep each text once.
    let mut parts: Vec<String> = Vec::new();
    for text in e.chain().map(|c| c.to_string()) {
        if !parts.iter().any(|p| p.contains(text.trim())) {
            parts.push(text);
        }
    }
    let mut line = parts.join(": ");
    line = line.replace('\n', " ");
    line
}

/// An error as JSON, for `--json`: the server's fields when it is the server's.
pub fn error_json(e: &anyhow::Error) -> serde_json::Value {
    for cause in e.chain() {
        if let Some(db) = cause.downcast_ref::<postgres::Error>().and_then(|pe| pe.as_db_error()) {
            return serde_json::json!({
                "message": db.message(),
                "sqlstate": db.code().code(),
                "severity": db.severity(),
                "detail": db.detail(),
                "hint": db.hint(),
            });
        }
    }
    serde_json::json!({ "message": describe_error(e), "sqlstate": null })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(dsn: Option<&str>, vars: &[(&str, &str)]) -> Settings {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::resolve_with(dsn, |k| vars.get(k).cloned()).unwrap()
    }

    #[test]
    fn environment_fills_everything() {
        let s = resolve(
            None,
            &[
                ("PGHOST", "127.0.0.1"),
                ("PGPORT", "54329"),
                ("PGUSER", "alice"),
                ("PGDATABASE", "app"),
                ("PGPASSWORD", "pw"),
            ],
        );
        let c = s.config();
        assert_eq!(c.get_hosts(), &[Host::Tcp("127.0.0.1".into())]);
        assert_eq!(c.get_ports(), &[54329]);
        assert_eq!(c.get_user(), Some("alice"));
        assert_eq!(c.get_dbname(), Some("app"));
        assert_eq!(c.get_password(), Some(&b"pw"[..]));
        assert_eq!(s.describe(), "127.0.0.1:54329/app");
    }

    #[test]
    fn dsn_wins_and_environment_fills_the_gaps() {
        let s = resolve(Some("postgresql://bob@db.example:6000"), &[("PGHOST", "other"), ("PGDATABASE", "app")]);
        let c = s.config();
        assert_eq!(c.get_hosts(), &[Host::Tcp("db.example".into())]);
        assert_eq!(c.get_ports(), &[6000]);
        assert_eq!(c.get_user(), Some("bob"));
        assert_eq!(c.get_dbname(), Some("app"));

        let kv = resolve(Some("host=h port=7 dbname=d user=u"), &[]);
        assert_eq!(kv.describe(), "h:7/d");
    }

    #[test]
    fn database_defaults_to_user() {
        let s = resolve(Some("host=h"), &[("PGUSER", "carol")]);
        assert_eq!(s.config().get_dbname(), Some("carol"));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(Settings::resolve_with(Some("postgresql://[bad"), |_| None).is_err());
        assert!(Settings::resolve_with(None, |k| (k == "PGPORT").then(|| "x".to_owned())).is_err());
    }
}
