//! The `--web.config.file` format: Prometheus's exporter-toolkit web
//! configuration (`tls_server_config`, `http_server_config`,
//! `basic_auth_users`), read exactly as Prometheus reads it, plus one
//! Tidemark key, `tidemark:`, for users with roles and bearer tokens.
//! Parsing and validation only: the TLS acceptor is built in
//! `server::tls`, requests are checked in `api::auth`.
//!
//! A file Prometheus accepts is accepted unchanged; its `basic_auth_users`
//! get role `admin` (in Prometheus any valid user may do everything).
//! Prometheus rejects the `tidemark:` key, so a file using it is for
//! Tidemark only. Unknown keys are an error naming the key
//! (`deny_unknown_fields`), as in exporter-toolkit.
//!
//! Upstream format: <https://github.com/prometheus/exporter-toolkit/blob/v0.9.1/docs/web-configuration.md>.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a web configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("reading web config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not parse or has an unknown key (serde names it).
    #[error("parsing web config {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde_yaml's message, naming the key and line.
        reason: String,
    },
    /// A value that parses but cannot be used.
    #[error("web config {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What a user may do. `admin` includes `read` and `write`; `read` and
/// `write` are disjoint, so an agent's credential can never read data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Remote write (and OTLP): what an agent needs.
    Write,
    /// Query APIs and remote read: what Grafana needs.
    Read,
    /// Everything, `/api/v1/admin/*` included.
    Admin,
}

impl Role {
    /// Whether a user with this role may call an endpoint needing `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }

    /// The name used in the file and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Write => "write",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role `/metrics` needs (`tidemark.metrics_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricsRole {
    /// No credentials needed.
    None,
    /// Users with role `read` (or `admin`).
    #[default]
    Read,
    /// Users with role `write` (or `admin`).
    Write,
    /// `admin` only.
    Admin,
}

impl MetricsRole {
    /// The role needed, or `None` when `/metrics` is open.
    pub fn role(self) -> Option<Role> {
        match self {
            MetricsRole::None => None,
            MetricsRole::Read => Some(Role::Read),
            MetricsRole::Write => Some(Role::Write),
            MetricsRole::Admin => Some(Role::Admin),
        }
    }
}

/// The whole file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    /// Serve HTTPS with these settings.
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    /// Response headers (and exporter-toolkit's `http2`).
    #[serde(default)]
    pub http_server_config: Option<HttpServerConfig>,
    /// User name → bcrypt hash; each gets role `admin`.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    /// Tidemark's extension (not for Prometheus's copy of the file).
    #[serde(default)]
    pub tidemark: Option<TidemarkSection>,
}

/// exporter-toolkit's `tls_server_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// Server certificate chain (PEM).
    #[serde(default)]
    pub cert_file: String,
    /// Server private key (PEM).
    #[serde(default)]
    pub key_file: String,
    /// `NoClientCert` (default), `RequestClientCert`,
    /// `RequireAnyClientCert`, `VerifyClientCertIfGiven`,
    /// `RequireAndVerifyClientCert`.
    #[serde(default)]
    pub client_auth_type: Option<ClientAuth>,
    /// CA certificates that client certificates must chain to (PEM).
    #[serde(default)]
    pub client_ca_file: String,
    /// Go cipher-suite names (TLS 1.2 only, as in Go).
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Go curve names; `X25519`, `CurveP256`, `CurveP384`.
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    /// `TLS12` (default) or `TLS13`; `TLS10`/`TLS11` are refused (rustls).
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
    /// `TLS12` or `TLS13` (default).
    #[serde(default)]
    pub max_version: Option<TlsVersion>,
    /// Accepted for compatibility; rustls always prefers the server's order.
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
    /// Client certificate SANs allowed; not supported yet (an error when
    /// set).
    #[serde(default)]
    pub client_allowed_sans: Vec<String>,
}

/// Go's `tls.ClientAuthType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum ClientAuth {
    /// No client certificate asked for.
    #[default]
    NoClientCert,
    /// Asked for, not required, not verified.
    RequestClientCert,
    /// Required, not verified.
    RequireAnyClientCert,
    /// Verified against `client_ca_file` when given.
    VerifyClientCertIfGiven,
    /// Required and verified against `client_ca_file`.
    RequireAndVerifyClientCert,
}

/// A TLS protocol version as exporter-toolkit names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.0 (refused: rustls does not implement it).
    TLS10,
    /// TLS 1.1 (refused: rustls does not implement it).
    TLS11,
    /// TLS 1.2.
    TLS12,
    /// TLS 1.3.
    TLS13,
}

/// exporter-toolkit's `http_server_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility; Tidemark serves HTTP/1.1.
    #[serde(default)]
    pub http2: Option<bool>,
    /// Headers added to every response. exporter-toolkit allows these
    /// names only.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The response headers exporter-toolkit lets `http_server_config.headers`
/// set (`web/handler.go` `extraHTTPHeaders`).
pub const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// Tidemark's `tidemark:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TidemarkSection {
    /// User name → role and credentials.
    #[serde(default)]
    pub users: BTreeMap<String, TidemarkUser>,
    /// Role `/metrics` needs; `none` leaves it open. Default `read`.
    #[serde(default)]
    pub metrics_role: MetricsRole,
}

/// One user of the `tidemark:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TidemarkUser {
    /// What the user may do.
    pub role: Role,
    /// bcrypt hash of the basic-auth password.
    #[serde(default)]
    pub password: Option<String>,
    /// bcrypt hash of a bearer token (`Authorization: Bearer <token>`).
    #[serde(default)]
    pub bearer_token: Option<String>,
}

/// A user ready for checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name (basic-auth user name; for tokens, shown in logs only).
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// bcrypt hash of the password, if the user may log in with one.
    pub password_hash: Option<String>,
    /// bcrypt hash of the bearer token, if any.
    pub token_hash: Option<String>,
}

/// A validated configuration, paths resolved against the file's directory.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// TLS settings, when HTTPS is on.
    pub tls: Option<TlsServerConfig>,
    /// Response headers to add, validated names.
    pub headers: Vec<(String, String)>,
    /// Every user; authentication is on when this is not empty.
    pub users: Vec<User>,
    /// The role `/metrics` needs.
    pub metrics_role: MetricsRole,
}

impl WebConfig {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// When the file cannot be read, does not parse, has an unknown key, or
    /// a value that cannot be used (a hash that is not bcrypt, a TLS
    /// version rustls lacks, a user listed twice).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).map_err(|e| match e {
            Error::Parse { reason, .. } => Error::Parse {
                path: path.to_path_buf(),
                reason,
            },
            Error::Invalid { reason, .. } => Error::Invalid {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }

    /// Parses and validates YAML text; relative paths are taken from `dir`.
    ///
    /// # Errors
    /// As [`WebConfig::load`].
    pub fn parse(text: &str, dir: &Path) -> Result<Self, Error> {
        let invalid = |reason: String| Error::Invalid {
            path: PathBuf::new(),
            reason,
        };
        // An empty file is a valid, empty configuration (as in Go).
        let file: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| Error::Parse {
                path: PathBuf::new(),
                reason: e.to_string(),
            })?
        };
        let mut users = Vec::new();
        for (name, hash) in &file.basic_auth_users {
            check_hash(hash).map_err(|r| invalid(format!("basic_auth_users.{name}: {r}")))?;
            users.push(User {
                name: name.clone(),
                role: Role::Admin,
                password_hash: Some(hash.clone()),
                token_hash: None,
            });
        }
        let section = file.tidemark.unwrap_or_default();
        for (name, u) in &section.users {
            if file.basic_auth_users.contains_key(name) {
                return Err(invalid(format!(
                    "user {name:?} is in both basic_auth_users and tidemark.users"
                )));
            }
            if u.password.is_none() && u.bearer_token.is_none() {
                return Err(invalid(format!(
                    "tidemark.users.{name}: needs a password or a bearer_token hash"
                )));
            }
            for (what, h) in [("password", &u.password), ("bearer_token", &u.bearer_token)] {
                if let Some(h) = h {
                    check_hash(h)
                        .map_err(|r| invalid(format!("tidemark.users.{name}.{what}: {r}")))?;
                }
            }
            users.push(User {
                name: name.clone(),
                role: u.role,
                password_hash: u.password.clone(),
                token_hash: u.bearer_token.clone(),
            });
        }
        let mut headers = Vec::new();
        if let Some(h) = &file.http_server_config {
            for (k, v) in &h.headers {
                let Some(name) = ALLOWED_HEADERS.iter().find(|a| a.eq_ignore_ascii_case(k)) else {
                    return Err(invalid(format!(
                        "http_server_config.headers: header {k:?} may not be set; allowed: {}",
                        ALLOWED_HEADERS.join(", ")
                    )));
                };
                if axum::http::HeaderValue::from_str(v).is_err() {
                    return Err(invalid(format!(
                        "http_server_config.headers.{k}: not a valid header value"
                    )));
                }
                headers.push((name.to_string(), v.clone()));
            }
        }
        let tls = match file.tls_server_config {
            None => None,
            Some(mut t) => {
                if t.cert_file.is_empty() {
                    return Err(invalid("tls_server_config: missing cert_file".into()));
                }
                if t.key_file.is_empty() {
                    return Err(invalid("tls_server_config: missing key_file".into()));
                }
                let client_auth = t.client_auth_type.unwrap_or_default();
                if matches!(
                    client_auth,
                    ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
                ) && t.client_ca_file.is_empty()
                {
                    return Err(invalid(format!(
                        "tls_server_config: client_auth_type {client_auth:?} needs client_ca_file"
                    )));
                }
                for v in [t.min_version, t.max_version].into_iter().flatten() {
                    if v < TlsVersion::TLS12 {
                        return Err(invalid(format!(
                            "tls_server_config: {v:?} is not supported (rustls implements TLS12 and TLS13)"
                        )));
                    }
                }
                if let (Some(lo), Some(hi)) = (t.min_version, t.max_version) {
                    if lo > hi {
                        return Err(invalid(
                            "tls_server_config: min_version is above max_version".into(),
                        ));
                    }
                }
                if !t.client_allowed_sans.is_empty() {
                    return Err(invalid(
                        "tls_server_config.client_allowed_sans is not supported by Tidemark yet"
                            .into(),
                    ));
                }
                for f in [&mut t.cert_file, &mut t.key_file, &mut t.client_ca_file] {
                    if !f.is_empty() {
                        *f = dir.join(&*f).display().to_string();
                    }
                }
                Some(t)
            }
        };
        Ok(WebConfig {
            tls,
            headers,
            users,
            metrics_role: section.metrics_role,
        })
    }

    /// Whether requests need credentials.
    pub fn auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }
}

/// A bcrypt hash as htpasswd and Go's bcrypt write it.
fn check_hash(h: &str) -> Result<(), String> {
    let ok = ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| h.starts_with(p))
        && h.len() == 60;
    if ok {
        Ok(())
    } else {
        Err("not a bcrypt hash (expected $2y$/$2b$/$2a$, 60 characters; see `htpasswd -nBC 10 USER`)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$YnlqXL8O8nlC2C14sTIgmO1bWh8mfDa6X1xPWhXbAJHXUpq/M7vPu";

    #[test]
    fn parse_prometheus_file_users_are_admin() {
        let c = WebConfig::parse(
            &format!("basic_auth_users:\n  alice: {HASH}\n"),
            Path::new("/etc"),
        )
        .unwrap();
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.users[0].role, Role::Admin);
        assert!(c.auth_enabled());
        assert_eq!(c.metrics_role, MetricsRole::Read);
    }

    #[test]
    fn parse_unknown_key_is_named() {
        for (text, key) in [
            ("basic_auth_user:\n  a: b\n", "basic_auth_user"),
            ("tls_server_config:\n  cert: x\n", "cert"),
            (
                "tidemark:\n  users:\n    a: {role: read, pasword: x}\n",
                "pasword",
            ),
        ] {
            let e = WebConfig::parse(text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn parse_invalid_values_are_refused() {
        for (text, what) in [
            ("basic_auth_users:\n  a: plain\n", "bcrypt"),
            ("tidemark:\n  users:\n    a: {role: god, password: x}\n", "god"),
            ("tidemark:\n  users:\n    a: {role: read}\n", "password or a bearer_token"),
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS10\n", "TLS10"),
            ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file"),
            ("http_server_config:\n  headers:\n    Server: x\n", "Server"),
        ] {
            let e = WebConfig::parse(text, Path::new(".")).unwrap_err().to_string();
            assert!(e.contains(what), "{text}: {e}");
        }
    }

    #[test]
    fn parse_tidemark_users_roles_and_paths() {
        let text = format!(
            "tls_server_config:\n  cert_file: tls/c.pem\n  key_file: /abs/k.pem\nhttp_server_config:\n  headers:\n    x-frame-options: deny\ntidemark:\n  metrics_role: none\n  users:\n    agent: {{role: write, bearer_token: '{HASH}'}}\n    grafana: {{role: read, password: '{HASH}'}}\n"
        );
        let c = WebConfig::parse(&text, Path::new("/etc/tm")).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert_file, "/etc/tm/tls/c.pem");
        assert_eq!(tls.key_file, "/abs/k.pem");
        assert_eq!(c.headers, vec![("X-Frame-Options".into(), "deny".into())]);
        assert_eq!(c.metrics_role, MetricsRole::None);
        assert_eq!(c.users[0].role, Role::Write);
        assert!(c.users[0].password_hash.is_none());
        assert!(Role::Admin.allows(Role::Write));
        assert!(!Role::Read.allows(Role::Write));
        assert!(!Role::Write.allows(Role::Read));
    }

    #[test]
    fn parse_empty_file_is_open() {
        assert!(!WebConfig::parse("", Path::new(".")).unwrap().auth_enabled());
    }
}
