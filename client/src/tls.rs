//! TLS as libpq does it: `sslmode` (disable, allow, prefer, require, verify-ca, verify-full),
//! `sslrootcert`, `sslcert`, `sslkey`, from the connection string or PGSSLMODE, PGSSLROOTCERT,
//! PGSSLCERT, PGSSLKEY, with libpq's defaults under `~/.postgresql/`.
//!
//! `prefer` (the default) and `require` encrypt without checking the server's certificate,
//! unless a root certificate is there (then `require` checks it, as libpq does); `verify-ca`
//! checks it against the root certificates, and `verify-full` also checks the host name.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres::config::SslMode as WireMode;
use postgres_openssl::MakeTlsConnector;

/// The connection-string keys this module handles; the rest go to the `postgres` crate.
pub const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => bail!("invalid sslmode value: \"{other}\""),
        })
    }

    /// What the wire protocol does: try TLS first (allow is taken as prefer), insist, or not.
    pub fn wire(self) -> WireMode {
        match self {
            Self::Disable => WireMode::Disable,
            Self::Allow | Self::Prefer => WireMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => WireMode::Require,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub mode: SslMode,
    rootcert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    home: Option<PathBuf>,
}

impl TlsOptions {
    /// From the connection string's values (`given`), else the environment, else defaults.
    pub fn resolve(given: &[(String, String)], var: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get =
            |key: &str, env: &str| given.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone()).or(var(env));
        let mode = SslMode::parse(&get("sslmode", "PGSSLMODE").unwrap_or_else(|| "prefer".into()))?;
        Ok(Self {
            mode,
            rootcert: get("sslrootcert", "PGSSLROOTCERT"),
            cert: get("sslcert", "PGSSLCERT"),
            key: get("sslkey", "PGSSLKEY"),
            home: var("HOME").map(|h| Path::new(&h).join(".postgresql")),
        })
    }

    fn default_file(&self, name: &str) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(name)).filter(|p| p.is_file())
    }

    /// The TLS connector for these options.
    pub fn connector(&self) -> anyhow::Result<MakeTlsConnector> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        let rootcert = match &self.rootcert {
            Some(path) => Some(PathBuf::from(path)),
            None => self.default_file("root.crt"),
        };
        let verify = match (self.mode, &rootcert) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => bail!(
                "sslmode {} needs a root certificate: set sslrootcert (or PGSSLROOTCERT), or put one in \
                 ~/.postgresql/root.crt",
                if self.mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
            ),
            (SslMode::VerifyCa | SslMode::VerifyFull | SslMode::Require, Some(root)) => {
                if root.as_os_str() == "system" {
                    builder.set_default_verify_paths()?;
                } else if !root.is_file() {
                    bail!("root certificate file \"{}\" does not exist", root.display());
                } else {
                    builder
                        .set_ca_file(root)
                        .with_context(|| format!("could not read root certificate file \"{}\"", root.display()))?;
                }
                true
            }
            _ => false,
        };
        builder.set_verify(if verify { SslVerifyMode::PEER } else { SslVerifyMode::NONE });
        let cert = self.cert.as_ref().map(PathBuf::from).or_else(|| self.default_file("postgresql.crt"));
        if let Some(cert) = cert.filter(|c| c.is_file()) {
            builder
                .set_certificate_chain_file(&cert)
                .with_context(|| format!("could not read certificate file \"{}\"", cert.display()))?;
            let key = self.key.as_ref().map(PathBuf::from).or_else(|| self.default_file("postgresql.key"));
            let key = key.with_context(|| format!("no private key for certificate \"{}\"", cert.display()))?;
            builder
                .set_private_key_file(&key, SslFiletype::PEM)
                .with_context(|| format!("could not read private key file \"{}\"", key.display()))?;
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        if self.mode != SslMode::VerifyFull {
            connector.set_callback(|config, _host| {
                config.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(connector)
    }
}

/// Splits libpq's TLS keys out of a connection string (URL or key=value): the string without
/// them, and their values.
pub fn take_keys(dsn: &str) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let mut taken = Vec::new();
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let Some((base, query)) = dsn.split_once('?') else { return Ok((dsn.to_owned(), taken)) };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if KEYS.contains(&k) {
                taken.push((k.to_owned(), percent_decode(v)?));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, taken));
    }
    let mut kept = Vec::new();
    for (k, v) in key_values(dsn)? {
        if KEYS.contains(&k.as_str()) {
            taken.push((k, v));
        } else {
            kept.push(format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    Ok((kept.join(" "), taken))
}

/// `key = value` pairs; values bare or single-quoted, with backslash escapes.
fn key_values(s: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            bail!("invalid connection string: missing \"=\" after \"{key}\"");
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => bail!("invalid connection string: unterminated quoted value for \"{key}\""),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn percent_decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).context("invalid percent-encoding in connection URL")?;
            out.push(u8::from_str_radix(hex, 16).context("invalid percent-encoding in connection URL")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_of_urls() {
        let (rest, taken) =
            take_keys("postgresql://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.crt")
                .unwrap();
        assert_eq!(rest, "postgresql://u@h:5/db?application_name=x");
        assert_eq!(
            taken,
            [("sslmode".to_owned(), "verify-full".to_owned()), ("sslrootcert".to_owned(), "/tmp/ca.crt".to_owned())]
        );
        assert_eq!(take_keys("postgres://h/db?sslmode=require").unwrap().0, "postgres://h/db");
    }

    #[test]
    fn keys_come_out_of_key_values() {
        let (rest, taken) = take_keys("host=h  sslmode = require password='it\\'s a secret' dbname=d").unwrap();
        assert_eq!(rest, "host='h' password='it\\'s a secret' dbname='d'");
        assert_eq!(taken, [("sslmode".to_owned(), "require".to_owned())]);
        assert!(take_keys("host").is_err());
        assert!(take_keys("host='open").is_err());
    }

    #[test]
    fn modes_and_defaults() {
        let none = |_: &str| None;
        assert_eq!(TlsOptions::resolve(&[], &none).unwrap().mode, SslMode::Prefer);
        let env = |k: &str| (k == "PGSSLMODE").then(|| "disable".to_owned());
        assert_eq!(TlsOptions::resolve(&[], &env).unwrap().mode, SslMode::Disable);
        let given = [("sslmode".to_owned(), "verify-ca".to_owned())];
        assert_eq!(TlsOptions::resolve(&given, &env).unwrap().mode, SslMode::VerifyCa);
        assert!(TlsOptions::resolve(&[("sslmode".into(), "sometimes".into())], &none).is_err());
        let verify = TlsOptions::resolve(&[("sslmode".into(), "verify-full".into())], &none).unwrap();
        assert!(verify.connector().is_err(), "verify-full without a root certificate must fail");
    }
}
