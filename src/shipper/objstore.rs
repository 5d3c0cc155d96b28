//! `--objstore.config.file`: Thanos's object storage YAML (`type`,
//! `config`, `prefix`), so a bucket config a Thanos user already has works
//! unchanged, parsed into an [`object_store::ObjectStore`]. Types: `S3`
//! (any S3-compatible server) and `FILESYSTEM` (a local directory, for
//! tests and single machines). Unknown types and fields are refused at
//! startup, naming them; known Thanos fields Tidemark cannot honour are
//! refused when set to anything but their default, never silently
//! ignored. Reads the file only; touches no bucket until used.
//!
//! Field names follow thanos-io/objstore's `s3.Config` and
//! `filesystem.Config` (docs/storage.md of Thanos).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::Deserialize;

/// Why a bucket config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading object storage config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not YAML of the expected shape (names the unknown or mistyped field).
    #[error("object storage config: {0}")]
    Yaml(String),
    /// `type` is none that Tidemark supports.
    #[error("object storage config: unsupported type {0:?} (supported: S3, FILESYSTEM)")]
    UnknownType(String),
    /// A required field is empty.
    #[error("object storage config: {kind} needs config.{field}")]
    Missing {
        /// The type (`S3`, `FILESYSTEM`).
        kind: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A Thanos field set to a value Tidemark does not implement.
    #[error(
        "object storage config: config.{field} = {value} is not supported by Tidemark ({why})"
    )]
    Unsupported {
        /// The field, dotted (`sse_config.type`).
        field: &'static str,
        /// The value found.
        value: String,
        /// What to do instead.
        why: &'static str,
    },
    /// A field's value is malformed.
    #[error("object storage config: config.{field}: {reason}")]
    Invalid {
        /// The field, dotted.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The client could not be built from a valid config.
    #[error("object storage client")]
    Client(#[source] object_store::Error),
    /// The FILESYSTEM directory could not be created.
    #[error("creating object storage directory {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A parsed bucket config.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketConfig {
    /// Which store and how to reach it.
    pub kind: BucketKind,
    /// Key prefix of every object (Thanos's `prefix`), without leading or
    /// trailing `/`; empty for none.
    pub prefix: String,
}

/// The store behind a [`BucketConfig`].
#[derive(Debug, Clone, PartialEq)]
pub enum BucketKind {
    /// An S3-compatible server.
    S3(Box<S3Config>),
    /// A local directory.
    Filesystem {
        /// Root directory of the bucket.
        directory: PathBuf,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<serde_yaml::Value>,
    #[serde(default)]
    prefix: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesystemConfig {
    #[serde(default)]
    directory: String,
}

/// Thanos's `type: S3` config (thanos-io/objstore `s3.Config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// `host[:port]` of the server, without scheme.
    pub endpoint: String,
    /// Region; empty means `us-east-1`.
    pub region: String,
    /// Accepted; dual-stack endpoints are not used.
    pub disable_dualstack: bool,
    /// Take credentials from the environment (`AWS_*`, instance metadata).
    pub aws_sdk_auth: bool,
    /// Access key (with `secret_key`).
    pub access_key: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// Must be false: only signature v4 is implemented.
    pub signature_version2: bool,
    /// Secret key (with `access_key`).
    pub secret_key: String,
    /// Session token of temporary credentials.
    pub session_token: String,
    /// Must be empty: user metadata is not sent.
    pub put_user_metadata: BTreeMap<String, String>,
    /// HTTP client settings.
    pub http_config: HttpConfig,
    /// Accepted; requests are traced at debug log level anyway.
    pub trace: TraceConfig,
    /// Accepted (`""`, `v1`, `v2`); the shipper does not list.
    pub list_objects_version: String,
    /// `auto` (path style except on amazonaws.com), `path` or
    /// `virtual-hosted`.
    pub bucket_lookup_type: String,
    /// Accepted; uploads carry no Content-MD5 (SigV4 signs the payload).
    pub send_content_md5: bool,
    /// Upload every file in one PUT.
    pub disable_multipart: bool,
    /// Files above this many bytes go up in parts of this size (0: 64 MiB).
    pub part_size: u64,
    /// Must be unset: server-side encryption is not implemented.
    pub sse_config: SseConfig,
    /// Must be empty: STS is not implemented.
    pub sts_endpoint: String,
    /// Retries of a failed request (0: 3).
    pub max_retries: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            endpoint: String::new(),
            region: String::new(),
            disable_dualstack: false,
            aws_sdk_auth: false,
            access_key: String::new(),
            insecure: false,
            signature_version2: false,
            secret_key: String::new(),
            session_token: String::new(),
            put_user_metadata: BTreeMap::new(),
            http_config: HttpConfig::default(),
            trace: TraceConfig::default(),
            list_objects_version: String::new(),
            bucket_lookup_type: "auto".to_string(),
            send_content_md5: true,
            disable_multipart: false,
            part_size: DEFAULT_PART_SIZE,
            sse_config: SseConfig::default(),
            sts_endpoint: String::new(),
            max_retries: 0,
        }
    }
}

/// Thanos's default `part_size` (64 MiB).
pub const DEFAULT_PART_SIZE: u64 = 64 << 20;

/// Thanos's `http_config`. Durations are Go durations (`1m30s`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// How long an idle pooled connection is kept.
    pub idle_conn_timeout: String,
    /// Longest wait for a response (applied to the whole request).
    pub response_header_timeout: String,
    /// Skip TLS certificate verification.
    pub insecure_skip_verify: bool,
    /// Accepted (the connect timeout covers the handshake).
    pub tls_handshake_timeout: String,
    /// Accepted.
    pub expect_continue_timeout: String,
    /// Accepted.
    pub max_idle_conns: i64,
    /// Accepted.
    pub max_idle_conns_per_host: i64,
    /// Accepted.
    pub max_conns_per_host: i64,
    /// Only `insecure_skip_verify` is implemented.
    pub tls_config: TlsConfig,
    /// Accepted.
    pub disable_compression: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            idle_conn_timeout: "1m30s".to_string(),
            response_header_timeout: "2m".to_string(),
            insecure_skip_verify: false,
            tls_handshake_timeout: "10s".to_string(),
            expect_continue_timeout: "1s".to_string(),
            max_idle_conns: 100,
            max_idle_conns_per_host: 100,
            max_conns_per_host: 0,
            tls_config: TlsConfig::default(),
            disable_compression: false,
        }
    }
}

/// Thanos's `http_config.tls_config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Must be empty (use the system's CA store).
    pub ca_file: String,
    /// Must be empty (no client certificates).
    pub cert_file: String,
    /// Must be empty.
    pub key_file: String,
    /// Must be empty.
    pub server_name: String,
    /// Skip TLS certificate verification.
    pub insecure_skip_verify: bool,
}

/// Thanos's `trace`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// Accepted.
    pub enable: bool,
}

/// Thanos's `sse_config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SseConfig {
    /// Must be empty.
    #[serde(rename = "type")]
    pub kind: String,
    /// Must be empty.
    pub kms_key_id: String,
    /// Must be empty.
    pub kms_encryption_context: BTreeMap<String, String>,
    /// Must be empty.
    pub encryption_key: String,
}

impl BucketConfig {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// As [`BucketConfig::parse`], or when the file cannot be read.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses Thanos's bucket YAML.
    ///
    /// # Errors
    /// An unknown `type` or field, a missing required field, or a Thanos
    /// option set to a value Tidemark does not implement.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        let config = raw
            .config
            .unwrap_or(serde_yaml::Value::Mapping(Default::default()));
        let kind = match raw.kind.to_ascii_uppercase().as_str() {
            "S3" => {
                let c: S3Config = serde_yaml::from_value(config)
                    .map_err(|e| ConfigError::Yaml(format!("S3 config: {e}")))?;
                validate_s3(&c)?;
                BucketKind::S3(Box::new(c))
            }
            "FILESYSTEM" => {
                let c: FilesystemConfig = serde_yaml::from_value(config)
                    .map_err(|e| ConfigError::Yaml(format!("FILESYSTEM config: {e}")))?;
                if c.directory.is_empty() {
                    return Err(ConfigError::Missing {
                        kind: "FILESYSTEM",
                        field: "directory",
                    });
                }
                BucketKind::Filesystem {
                    directory: PathBuf::from(c.directory),
                }
            }
            _ => return Err(ConfigError::UnknownType(raw.kind)),
        };
        Ok(Self {
            kind,
            prefix: raw.prefix.trim_matches('/').to_string(),
        })
    }

    /// Builds the client (the FILESYSTEM directory is created if missing).
    ///
    /// # Errors
    /// When the client cannot be built or the directory created.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, ConfigError> {
        match &self.kind {
            BucketKind::Filesystem { directory } => {
                std::fs::create_dir_all(directory).map_err(|source| ConfigError::Directory {
                    path: directory.clone(),
                    source,
                })?;
                let fs = LocalFileSystem::new_with_prefix(directory)
                    .map_err(ConfigError::Client)?
                    // Empty block directories go with their last object.
                    .with_automatic_cleanup(true);
                Ok(Arc::new(fs))
            }
            BucketKind::S3(c) => Ok(Arc::new(build_s3(c)?)),
        }
    }

    /// Most bytes sent in one PUT; larger files go up in parts this big.
    pub fn part_size(&self) -> u64 {
        match &self.kind {
            BucketKind::S3(c) if c.disable_multipart => u64::MAX,
            BucketKind::S3(c) if c.part_size > 0 => c.part_size.max(MIN_PART_SIZE),
            _ => DEFAULT_PART_SIZE,
        }
    }
}

/// S3's smallest part of a multipart upload (except the last).
const MIN_PART_SIZE: u64 = 5 << 20;

fn validate_s3(c: &S3Config) -> Result<(), ConfigError> {
    let missing = |field| ConfigError::Missing { kind: "S3", field };
    if c.bucket.is_empty() {
        return Err(missing("bucket"));
    }
    if c.endpoint.is_empty() {
        return Err(missing("endpoint"));
    }
    if c.endpoint.contains("://") {
        return Err(ConfigError::Invalid {
            field: "endpoint",
            reason: format!(
                "{:?} must be host[:port] without a scheme (use `insecure: true` for http)",
                c.endpoint
            ),
        });
    }
    if !c.aws_sdk_auth && (c.access_key.is_empty() != c.secret_key.is_empty()) {
        return Err(ConfigError::Invalid {
            field: "access_key",
            reason: "access_key and secret_key must be given together".to_string(),
        });
    }
    let unsupported = |field, value: String, why| ConfigError::Unsupported { field, value, why };
    if c.signature_version2 {
        return Err(unsupported(
            "signature_version2",
            "true".into(),
            "only signature v4 is implemented",
        ));
    }
    if !c.put_user_metadata.is_empty() {
        return Err(unsupported(
            "put_user_metadata",
            format!("{:?}", c.put_user_metadata),
            "user metadata is not sent",
        ));
    }
    if !c.sse_config.kind.is_empty()
        || !c.sse_config.kms_key_id.is_empty()
        || !c.sse_config.encryption_key.is_empty()
        || !c.sse_config.kms_encryption_context.is_empty()
    {
        return Err(unsupported(
            "sse_config",
            format!("{:?}", c.sse_config.kind),
            "use the bucket's default encryption instead",
        ));
    }
    if !c.sts_endpoint.is_empty() {
        return Err(unsupported(
            "sts_endpoint",
            c.sts_endpoint.clone(),
            "STS is not implemented",
        ));
    }
    let tls = &c.http_config.tls_config;
    for (field, value) in [
        ("http_config.tls_config.ca_file", &tls.ca_file),
        ("http_config.tls_config.cert_file", &tls.cert_file),
        ("http_config.tls_config.key_file", &tls.key_file),
        ("http_config.tls_config.server_name", &tls.server_name),
    ] {
        if !value.is_empty() {
            return Err(unsupported(
                field,
                value.clone(),
                "the system's CA store is used; set SSL_CERT_FILE for a private CA",
            ));
        }
    }
    match c.bucket_lookup_type.as_str() {
        "auto" | "path" | "virtual-hosted" | "" => {}
        other => {
            return Err(ConfigError::Invalid {
                field: "bucket_lookup_type",
                reason: format!("{other:?} is none of auto, path, virtual-hosted"),
            })
        }
    }
    match c.list_objects_version.as_str() {
        "" | "v1" | "v2" => {}
        other => {
            return Err(ConfigError::Invalid {
                field: "list_objects_version",
                reason: format!("{other:?} is none of v1, v2"),
            })
        }
    }
    for (field, value) in [
        (
            "http_config.idle_conn_timeout",
            &c.http_config.idle_conn_timeout,
        ),
        (
            "http_config.response_header_timeout",
            &c.http_config.response_header_timeout,
        ),
        (
            "http_config.tls_handshake_timeout",
            &c.http_config.tls_handshake_timeout,
        ),
        (
            "http_config.expect_continue_timeout",
            &c.http_config.expect_continue_timeout,
        ),
    ] {
        go_duration(value).map_err(|reason| ConfigError::Invalid { field, reason })?;
    }
    Ok(())
}

fn build_s3(c: &S3Config) -> Result<object_store::aws::AmazonS3, ConfigError> {
    let mut b = if c.aws_sdk_auth {
        AmazonS3Builder::from_env()
    } else {
        AmazonS3Builder::new()
    };
    let scheme = if c.insecure { "http" } else { "https" };
    let virtual_hosted = match c.bucket_lookup_type.as_str() {
        "virtual-hosted" => true,
        "path" => false,
        // minio-go's auto: virtual-hosted on AWS, path style elsewhere.
        _ => c.endpoint.ends_with("amazonaws.com"),
    };
    let region = if c.region.is_empty() {
        "us-east-1"
    } else {
        &c.region
    };
    let timeout = |s: &str| go_duration(s).ok().filter(|d| !d.is_zero());
    let mut client = ClientOptions::new()
        .with_allow_http(c.insecure)
        .with_allow_invalid_certificates(
            c.http_config.insecure_skip_verify || c.http_config.tls_config.insecure_skip_verify,
        );
    if let Some(d) = timeout(&c.http_config.idle_conn_timeout) {
        client = client.with_pool_idle_timeout(d);
    }
    if let Some(d) = timeout(&c.http_config.response_header_timeout) {
        client = client.with_timeout(d);
    }
    let retry = RetryConfig {
        max_retries: if c.max_retries == 0 {
            3
        } else {
            c.max_retries as usize
        },
        // The shipper retries whole blocks with its own backoff; a request
        // does not wait out a long outage.
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    };
    b = b
        .with_bucket_name(&c.bucket)
        .with_endpoint(format!("{scheme}://{}", c.endpoint))
        .with_region(region)
        .with_virtual_hosted_style_request(virtual_hosted)
        .with_client_options(client)
        .with_retry(retry);
    if !c.access_key.is_empty() {
        b = b
            .with_access_key_id(&c.access_key)
            .with_secret_access_key(&c.secret_key);
    }
    if !c.session_token.is_empty() {
        b = b.with_token(&c.session_token);
    }
    b.build().map_err(ConfigError::Client)
}

/// Parses a Go duration (`1m30s`, `500ms`, `2h`, `0`).
fn go_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() || s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("{s:?}: a number without a unit"))?;
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("{s:?}: unknown unit {unit:?}")),
        };
        total = total
            .checked_add(
                Duration::try_from_secs_f64(value * secs)
                    .map_err(|_| format!("{s:?}: out of range"))?,
            )
            .ok_or_else(|| format!("{s:?}: out of range"))?;
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thanos_s3_example_parses_with_defaults() {
        let c = BucketConfig::parse(
            "type: S3\nconfig:\n  bucket: metrics\n  endpoint: 127.0.0.1:9000\n  access_key: a\n  secret_key: b\n  insecure: true\n  http_config:\n    idle_conn_timeout: 1m30s\n    response_header_timeout: 2m\n  bucket_lookup_type: auto\n  part_size: 67108864\nprefix: /tenant-0/\n",
        )
        .unwrap();
        assert_eq!(c.prefix, "tenant-0");
        let BucketKind::S3(s3) = &c.kind else {
            panic!("not S3: {c:?}")
        };
        assert_eq!(s3.bucket, "metrics");
        assert!(s3.insecure);
        assert!(s3.send_content_md5);
        assert_eq!(c.part_size(), 64 << 20);
        c.build().unwrap();
    }

    #[test]
    fn config_unknown_type_or_field_is_named() {
        let e = BucketConfig::parse("type: GCS\nconfig:\n  bucket: x\n").unwrap_err();
        assert!(e.to_string().contains("\"GCS\""), "{e}");
        let e =
            BucketConfig::parse("type: S3\nconfig:\n  bucket: x\n  endpoint: h:1\n  bukket: y\n")
                .unwrap_err();
        assert!(e.to_string().contains("bukket"), "{e}");
        let e = BucketConfig::parse("type: FILESYSTEM\nconfig:\n  dir: /tmp\n").unwrap_err();
        assert!(e.to_string().contains("dir"), "{e}");
        let e = BucketConfig::parse("type: S3\nconfig: {}\nprefx: a\n").unwrap_err();
        assert!(e.to_string().contains("prefx"), "{e}");
    }

    #[test]
    fn config_missing_or_unsupported_values_are_refused() {
        let e = BucketConfig::parse("type: S3\nconfig:\n  endpoint: h:1\n").unwrap_err();
        assert!(e.to_string().contains("config.bucket"), "{e}");
        let e = BucketConfig::parse("type: S3\nconfig:\n  bucket: b\n  endpoint: http://h:1\n")
            .unwrap_err();
        assert!(e.to_string().contains("scheme"), "{e}");
        let e = BucketConfig::parse(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: h:1\n  signature_version2: true\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("signature_version2"), "{e}");
        let e = BucketConfig::parse(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: h:1\n  sse_config:\n    type: SSE-KMS\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("sse_config"), "{e}");
        let e = BucketConfig::parse(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: h:1\n  access_key: a\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("secret_key"), "{e}");
        let e = BucketConfig::parse(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: h:1\n  http_config:\n    idle_conn_timeout: 5x\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("idle_conn_timeout"), "{e}");
        let e = BucketConfig::parse("type: FILESYSTEM\nconfig: {}\n").unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        assert!(go_duration("5").is_err());
        assert!(go_duration("1d").is_err());
    }
}
