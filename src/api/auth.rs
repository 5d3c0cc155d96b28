//! Authentication and roles for every request, from `--web.config.file`
//! ([`WebConfig`]): `Authorization: Basic` (exporter-toolkit's
//! `basic_auth_users`, role `admin`; Tidemark's users with a role) or
//! `Authorization: Bearer` (Tidemark's token users). The role an endpoint
//! needs comes from one table, [`ROUTE_ROLES`]. Also adds
//! `http_server_config.headers` to every answer.
//!
//! Owns the current configuration ([`Auth`]), which a reload replaces
//! whole; a request keeps the configuration it started with. Does not
//! touch TLS (that is `server::tls`) or pick statuses (`api::error`).
//!
//! bcrypt is slow on purpose (~50 ms at cost 10), so a verified credential
//! is cached: per user, the SHA-256 of the last verified password, compared
//! in constant time; per token user, the SHA-256 of the token. Only
//! successes are cached (bounded by the number of users); a reload starts
//! with an empty cache. An unknown user still costs one bcrypt, against a
//! fixed hash, so timing does not tell which of user or password was wrong.

use std::sync::Arc;

use parking_lot::RwLock;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::{ApiError, AppState};
use crate::web_config::{MetricsRole, Role, WebConfig};

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Nothing: Kubernetes probes.
    Nothing,
    /// The role `tidemark.metrics_role` names.
    MetricsRole,
    /// This role (or `admin`).
    Role(Role),
}

/// Path → what it needs; the first match wins. A pattern ending in `/` is
/// a prefix, any other is exact. Paths not listed need `read`.
const ROUTE_ROLES: &[(&str, Needs)] = &[
    ("/-/healthy", Needs::Nothing),
    ("/-/ready", Needs::Nothing),
    ("/metrics", Needs::MetricsRole),
    ("/api/v1/write", Needs::Role(Role::Write)),
    ("/api/v1/otlp/", Needs::Role(Role::Write)),
    ("/opentelemetry/", Needs::Role(Role::Write)),
    ("/api/v1/admin/", Needs::Role(Role::Admin)),
    ("/api/v1/read", Needs::Role(Role::Read)),
    ("/api/", Needs::Role(Role::Read)),
];

/// The role `path` needs, or `None` when it is open.
fn needed_role(path: &str, metrics_role: MetricsRole) -> Option<Role> {
    let needs = ROUTE_ROLES
        .iter()
        .find(|(p, _)| path == *p || (p.ends_with('/') && path.starts_with(p)))
        .map_or(Needs::Role(Role::Read), |(_, n)| *n);
    match needs {
        Needs::Nothing => None,
        Needs::MetricsRole => metrics_role.role(),
        Needs::Role(r) => Some(r),
    }
}

/// A valid bcrypt hash of a random string nobody knows: an unknown user
/// is checked against it so a miss costs as much as a wrong password.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DSmV5j2.bJm4bOmkVjvYq";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// One configuration in force, with its verified-credential caches.
struct Active {
    config: WebConfig,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// User index → SHA-256 of the last password verified for it.
    passwords: parking_lot::Mutex<Vec<Option<[u8; 32]>>>,
    /// User index → SHA-256 of its verified bearer token.
    tokens: parking_lot::Mutex<Vec<Option<[u8; 32]>>>,
}

impl Active {
    fn new(config: WebConfig) -> Self {
        let headers = config
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::try_from(k.as_str()).ok()?,
                    HeaderValue::try_from(v.as_str()).ok()?,
                ))
            })
            .collect();
        let n = config.users.len();
        Self {
            config,
            headers,
            passwords: parking_lot::Mutex::new(vec![None; n]),
            tokens: parking_lot::Mutex::new(vec![None; n]),
        }
    }
}

/// The authentication state of the API: the configuration in force and
/// the failure counter.
///
/// Locking: `current` is read per request (the `Arc` is cloned and the
/// lock released at once) and written by [`Auth::replace`] only.
pub struct Auth {
    current: RwLock<Arc<Active>>,
    failures: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

/// A credential presented by the client.
enum Credential {
    Basic { user: String, password: String },
    Bearer(String),
}

impl Auth {
    /// Auth with `config` in force, its failure counter in `registry`.
    pub(crate) fn register(config: WebConfig, registry: &mut Registry) -> Self {
        let failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tidemark_http_auth_failures",
            "Requests refused by authentication: missing or invalid credentials (401), or a valid user without the role (403).",
            failures.clone(),
        );
        for reason in ["missing", "invalid", "forbidden"] {
            let _ = failures.get_or_create(&ReasonLabels { reason });
        }
        Self {
            current: RwLock::new(Arc::new(Active::new(config))),
            failures,
        }
    }

    /// Puts `config` in force for requests that start from now on; the
    /// verified-credential cache starts empty.
    pub fn replace(&self, config: WebConfig) {
        let next = Arc::new(Active::new(config));
        *self.current.write() = next;
    }

    fn active(&self) -> Arc<Active> {
        self.current.read().clone()
    }

    fn fail(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabels { reason }).inc();
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn parse_credential(value: &HeaderValue) -> Option<Credential> {
    let v = value.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Credential::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Some(Credential::Bearer(rest.to_string()))
    } else {
        None
    }
}

async fn bcrypt_verify(secret: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || bcrypt::verify(secret, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// The role of the user `cred` proves, or `None`.
async fn verify(active: &Active, cred: Credential) -> Option<Role> {
    let users = &active.config.users;
    match cred {
        Credential::Basic { user, password } => {
            let key = sha256(&[user.as_bytes(), password.as_bytes()]);
            let found = users
                .iter()
                .position(|u| u.name == user && u.password_hash.is_some());
            let Some(i) = found else {
                bcrypt_verify(password, DUMMY_HASH.to_string()).await;
                return None;
            };
            let cached = active.passwords.lock()[i];
            if cached.is_some_and(|c| bool::from(c.ct_eq(&key))) {
                return Some(users[i].role);
            }
            let hash = users[i].password_hash.clone()?;
            if bcrypt_verify(password, hash).await {
                active.passwords.lock()[i] = Some(key);
                Some(users[i].role)
            } else {
                None
            }
        }
        Credential::Bearer(token) => {
            let key = sha256(&[b"bearer", token.as_bytes()]);
            {
                let cache = active.tokens.lock();
                // Every entry is compared, so timing does not depend on
                // which one matches.
                let mut hit = None;
                for (i, c) in cache.iter().enumerate() {
                    if c.is_some_and(|c| bool::from(c.ct_eq(&key))) {
                        hit = Some(i);
                    }
                }
                if let Some(i) = hit {
                    return Some(users[i].role);
                }
            }
            let mut tried = false;
            for (i, u) in users.iter().enumerate() {
                let Some(hash) = &u.token_hash else { continue };
                tried = true;
                if bcrypt_verify(token.clone(), hash.clone()).await {
                    active.tokens.lock()[i] = Some(key);
                    return Some(u.role);
                }
            }
            if !tried {
                bcrypt_verify(token, DUMMY_HASH.to_string()).await;
            }
            None
        }
    }
}

/// The middleware: lets the request through when the path is open or the
/// credential carries the role, else answers 401 or 403; adds the
/// configured response headers either way.
pub(crate) async fn require(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let auth = &state.auth;
    let active = auth.active();
    let needed = if active.config.auth_enabled() {
        needed_role(req.uri().path(), active.config.metrics_role)
    } else {
        None
    };
    let mut resp = match needed {
        None => next.run(req).await,
        Some(needed) => match req
            .headers()
            .get(header::AUTHORIZATION)
            .map(parse_credential)
        {
            None => {
                auth.fail("missing");
                ApiError::Unauthorized.into_response()
            }
            Some(None) => {
                auth.fail("invalid");
                ApiError::Unauthorized.into_response()
            }
            Some(Some(cred)) => match verify(&active, cred).await {
                None => {
                    auth.fail("invalid");
                    ApiError::Unauthorized.into_response()
                }
                Some(role) if !role.allows(needed) => {
                    auth.fail("forbidden");
                    ApiError::Forbidden { needed }.into_response()
                }
                Some(_) => next.run(req).await,
            },
        },
    };
    for (k, v) in &active.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_role_table() {
        let m = MetricsRole::Read;
        for (path, want) in [
            ("/-/healthy", None),
            ("/-/ready", None),
            ("/metrics", Some(Role::Read)),
            ("/api/v1/write", Some(Role::Write)),
            ("/api/v1/otlp/v1/metrics", Some(Role::Write)),
            ("/api/v1/admin/tsdb/snapshot", Some(Role::Admin)),
            ("/api/v1/read", Some(Role::Read)),
            ("/api/v1/query", Some(Role::Read)),
            ("/api/v1/writex", Some(Role::Read)),
            ("/-/healthyx", Some(Role::Read)),
            ("/nope", Some(Role::Read)),
        ] {
            assert_eq!(needed_role(path, m), want, "{path}");
        }
        assert_eq!(needed_role("/metrics", MetricsRole::None), None);
        assert_eq!(
            needed_role("/metrics", MetricsRole::Admin),
            Some(Role::Admin)
        );
    }

    #[test]
    fn dummy_hash_is_a_valid_bcrypt_hash() {
        assert_eq!(bcrypt::verify("x", DUMMY_HASH).ok(), Some(false));
    }

    #[test]
    fn parse_credential_forms() {
        let v = HeaderValue::from_static("Basic YWxpY2U6cDpx"); // alice:p:q
        assert!(
            matches!(parse_credential(&v), Some(Credential::Basic { user, password }) if user == "alice" && password == "p:q")
        );
        let v = HeaderValue::from_static("Bearer abc");
        assert!(matches!(parse_credential(&v), Some(Credential::Bearer(t)) if t == "abc"));
        for bad in ["Basic !!!", "Digest x", "Bearer ", "Basic YWxpY2U="] {
            assert!(
                parse_credential(&HeaderValue::from_static(bad)).is_none(),
                "{bad}"
            );
        }
    }
}
