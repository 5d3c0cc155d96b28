//! Command-line and environment configuration ([`Config`]), its defaults,
//! and conversion into each layer's options. The only place that reads
//! flags or `TIDEMARK_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::api::{ApiOptions, WriteConcurrency};
use crate::ingest::otlp::names::TranslationStrategy;
use crate::ingest::otlp::translate::{Promote, TranslateOptions};
use crate::ingest::{ReadLimits, ReceiverOptions, WriteLimits};
use crate::promql::EngineOptions;
use crate::server::http::HttpLimits;
use crate::storage::wal::{FsyncPolicy, WalOptions};
use crate::storage::Options;

/// When the WAL is fsynced relative to acknowledging a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WalFsync {
    /// Group commit: a write is acknowledged after an fsync covering it
    /// (concurrent writes share one fsync). Survives power loss.
    Batch,
    /// Acknowledge after write(2); fsync every `--wal-fsync-interval`.
    /// Survives process crashes; a power loss may lose the last interval.
    Interval,
    /// Never fsync explicitly. Survives process crashes only.
    None,
}

/// The command line: the ingesting node's flags ([`Config`]) with no
/// subcommand, exactly as before subcommands existed, or a role.
#[derive(Debug, Clone, Parser)]
#[command(name = "tidemark", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// The ingesting node's flags (when no subcommand is given).
    #[command(flatten)]
    pub config: Config,
    /// A role other than the ingesting node.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The roles besides the ingesting node.
// Parsed once at startup; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Serve PromQL and the Prometheus HTTP API (read only) from the
    /// blocks in object storage (`--objstore.config.file`, required).
    Store(StoreArgs),
    /// Merge the blocks of each stream in object storage into larger
    /// ones, delete what they replace and apply bucket retention (a
    /// singleton: run exactly one).
    Compact(CompactArgs),
    /// Serve PromQL and the Prometheus HTTP API over other Tidemark nodes
    /// and stores (`--endpoint`, repeatable): the query role.
    Query(QueryArgs),
}

/// `tidemark compact`'s flags (Thanos compactor's names where it has one).
#[derive(Debug, Clone, clap::Args)]
pub struct CompactArgs {
    /// The bucket (Thanos's object storage YAML).
    #[arg(long = "objstore.config.file", env = "TIDEMARK_OBJSTORE_CONFIG_FILE")]
    pub objstore_config_file: PathBuf,
    /// Local scratch space: the blocks of one merge, downloaded, and the
    /// merged block (emptied at every pass).
    #[arg(
        long = "data-dir",
        env = "TIDEMARK_COMPACT_DATA_DIR",
        default_value = "./data-compact"
    )]
    pub data_dir: PathBuf,
    /// Keep running, a pass every `--wait-interval`; without it, one pass
    /// and exit (0 when it succeeded), as Thanos's compactor.
    #[arg(long, env = "TIDEMARK_COMPACT_WAIT")]
    pub wait: bool,
    /// Time between passes with `--wait`.
    #[arg(long = "wait-interval", env = "TIDEMARK_COMPACT_WAIT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub wait_interval: Duration,
    /// Time between marking a block for deletion and deleting it: stores
    /// still serving it switch to the merged block within it.
    #[arg(long = "delete-delay", env = "TIDEMARK_COMPACT_DELETE_DELAY", default_value = "48h", value_parser = parse_duration)]
    pub delete_delay: Duration,
    /// Blocks whose newest possible sample is older than this are deleted
    /// from the bucket (0s: kept forever).
    #[arg(long = "retention.resolution-raw", env = "TIDEMARK_COMPACT_RETENTION", default_value = "0s", value_parser = parse_duration)]
    pub retention_raw: Duration,
    /// Blocks younger than this (by ULID time) are not merged yet, unless
    /// the compactor wrote them.
    #[arg(long = "consistency-delay", env = "TIDEMARK_COMPACT_CONSISTENCY_DELAY", default_value = "30m", value_parser = parse_duration)]
    pub consistency_delay: Duration,
    /// Largest block a merge builds; ranges grow from the nodes' 2 h by
    /// three (2h, 6h, 18h, 54h, 162h, ...) up to this.
    #[arg(long = "compaction.max-block-duration", env = "TIDEMARK_COMPACT_MAX_BLOCK_DURATION", default_value = "14d", value_parser = parse_duration)]
    pub max_block_duration: Duration,
    /// Address of the HTTP server: `/-/healthy`, `/-/ready` (after the
    /// first pass that succeeded), `/metrics`. `--listen` is accepted too,
    /// as the node and the store call it.
    #[arg(
        long = "web.listen-address",
        alias = "listen",
        env = "TIDEMARK_COMPACT_LISTEN",
        default_value = "0.0.0.0:9202"
    )]
    pub listen: SocketAddr,
    /// Log filter, as the server's `--log-level`.
    #[arg(long = "log-level", env = "TIDEMARK_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// `tidemark query`'s flags: the query, HTTP and limit flags of
/// [`Config`] (storage, WAL and ingest flags have no effect) plus its own.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Every flag of the ingesting node (those that apply to queries).
    #[command(flatten)]
    pub config: Config,
    /// A node or store to query: `HOST:PORT`, `dns+HOST:PORT` (every A/AAAA
    /// address of HOST) or `dnssrv+_SERVICE._PROTO.NAME` (every SRV
    /// target), as Thanos writes them. Repeatable.
    #[arg(
        long = "endpoint",
        env = "TIDEMARK_QUERY_ENDPOINTS",
        value_delimiter = ',',
        required = true
    )]
    pub endpoints: Vec<crate::query::EndpointSpec>,
    /// A label naming the replica of an HA pair (e.g. `replica`): dropped
    /// from answers, series equal without it de-duplicated. Repeatable.
    #[arg(
        long = "query.replica-label",
        env = "TIDEMARK_QUERY_REPLICA_LABELS",
        value_delimiter = ','
    )]
    pub replica_labels: Vec<String>,
    /// Answer with warnings instead of failing when an endpoint does not
    /// answer (a request's `partial_response=true|false` overrides it).
    #[arg(
        long = "query.partial-response",
        env = "TIDEMARK_QUERY_PARTIAL_RESPONSE"
    )]
    pub partial_response: bool,
    /// Longest one call to an endpoint may take (the query's own time-out
    /// bounds it too).
    #[arg(long = "endpoint.timeout", env = "TIDEMARK_ENDPOINT_TIMEOUT", default_value = "1m", value_parser = parse_duration)]
    pub endpoint_timeout: Duration,
    /// How often DNS names are re-resolved and each endpoint's time range
    /// and external labels re-read.
    #[arg(long = "endpoint.refresh-interval", env = "TIDEMARK_ENDPOINT_REFRESH_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub refresh_interval: Duration,
    /// Basic-auth user sent to every endpoint (with
    /// `--endpoint.basic-auth-password-file`), for nodes whose
    /// `--web.config.file` asks for credentials.
    #[arg(
        long = "endpoint.basic-auth-username",
        env = "TIDEMARK_ENDPOINT_BASIC_AUTH_USERNAME",
        requires = "endpoint_password_file",
        conflicts_with = "endpoint_bearer_token_file"
    )]
    pub endpoint_username: Option<String>,
    /// File holding the basic-auth password (trailing newline ignored).
    #[arg(
        long = "endpoint.basic-auth-password-file",
        env = "TIDEMARK_ENDPOINT_BASIC_AUTH_PASSWORD_FILE",
        requires = "endpoint_username"
    )]
    pub endpoint_password_file: Option<PathBuf>,
    /// File holding a bearer token sent to every endpoint (trailing
    /// newline ignored).
    #[arg(
        long = "endpoint.bearer-token-file",
        env = "TIDEMARK_ENDPOINT_BEARER_TOKEN_FILE"
    )]
    pub endpoint_bearer_token_file: Option<PathBuf>,
    /// Talk HTTPS to every endpoint (nodes and stores whose
    /// `--web.config.file` serves TLS), verifying their certificates
    /// against `--endpoint.tls-ca-file`, or the system's roots without it.
    #[arg(long = "endpoint.tls", env = "TIDEMARK_ENDPOINT_TLS")]
    pub endpoint_tls: bool,
    /// PEM file of the CA(s) that sign the endpoints' certificates
    /// (implies `--endpoint.tls`).
    #[arg(long = "endpoint.tls-ca-file", env = "TIDEMARK_ENDPOINT_TLS_CA_FILE")]
    pub endpoint_tls_ca_file: Option<PathBuf>,
    /// PEM client certificate presented to endpoints that ask for one
    /// (`client_auth_type`; with `--endpoint.tls-key-file`).
    #[arg(
        long = "endpoint.tls-cert-file",
        env = "TIDEMARK_ENDPOINT_TLS_CERT_FILE",
        requires = "endpoint_tls_key_file"
    )]
    pub endpoint_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `--endpoint.tls-cert-file`.
    #[arg(
        long = "endpoint.tls-key-file",
        env = "TIDEMARK_ENDPOINT_TLS_KEY_FILE",
        requires = "endpoint_tls_cert_file"
    )]
    pub endpoint_tls_key_file: Option<PathBuf>,
    /// The name the endpoints' certificates must carry, instead of each
    /// endpoint's address (`dns+`/`dnssrv+` endpoints resolve to pod IPs and
    /// names their certificates may not list).
    #[arg(
        long = "endpoint.tls-server-name",
        env = "TIDEMARK_ENDPOINT_TLS_SERVER_NAME"
    )]
    pub endpoint_tls_server_name: Option<String>,
}

/// `tidemark store`'s flags: the query, HTTP and limit flags of
/// [`Config`] (storage, WAL and ingest flags have no effect) plus its own.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Every flag of the ingesting node (those that apply to reads).
    #[command(flatten)]
    pub config: Config,
    /// Local directory of the store's caches: the served blocks' small
    /// files and the index cache (emptied at start).
    #[arg(
        long = "store.cache-dir",
        env = "TIDEMARK_STORE_CACHE_DIR",
        default_value = "store-cache"
    )]
    pub cache_dir: PathBuf,
    /// How often the bucket is listed for new and removed blocks.
    #[arg(long = "store.sync-interval", env = "TIDEMARK_STORE_SYNC_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub sync_interval: Duration,
    /// Most bytes of block index files kept in `--store.cache-dir`
    /// (least recently used out first; an index queries hold at once may
    /// pass it until they end). Units as `--retention-size`.
    #[arg(long = "store.index-cache-size", env = "TIDEMARK_STORE_INDEX_CACHE_SIZE", default_value = "1GB", value_parser = parse_bytes)]
    pub index_cache_size: u64,
    /// Most bytes of chunk ranges read from the bucket kept in memory
    /// (least recently used out first). Units as `--retention-size`.
    #[arg(long = "store.chunk-cache-size", env = "TIDEMARK_STORE_CHUNK_CACHE_SIZE", default_value = "512MB", value_parser = parse_bytes)]
    pub chunk_cache_size: u64,
}

/// Tidemark: a Prometheus-compatible metrics store (remote write in, PromQL out).
#[derive(Debug, Clone, Parser)]
#[command(name = "tidemark", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on for HTTP (remote write, query API, health).
    #[arg(
        long,
        alias = "web.listen-address",
        env = "TIDEMARK_LISTEN",
        default_value = "0.0.0.0:9201"
    )]
    pub listen: SocketAddr,

    /// Most HTTP connections served at once; further clients wait to be
    /// accepted (as Prometheus's `--web.max-connections`).
    #[arg(
        long = "web.max-connections",
        env = "TIDEMARK_WEB_MAX_CONNECTIONS",
        default_value_t = 4096
    )]
    pub web_max_connections: usize,

    /// Longest a client may take to send a request's headers; slower
    /// connections are closed (slowloris).
    #[arg(long = "web.read-header-timeout", env = "TIDEMARK_WEB_READ_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub web_read_header_timeout: Duration,

    /// A connection that reads and writes nothing for this long is closed:
    /// idle keep-alive connections, stalled request bodies (as Prometheus's
    /// `--web.read-timeout`).
    #[arg(long = "web.read-timeout", env = "TIDEMARK_WEB_READ_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub web_read_timeout: Duration,

    /// Prometheus's web configuration file (exporter-toolkit format): TLS
    /// (`tls_server_config`), basic auth (`basic_auth_users`), response
    /// headers, plus Tidemark's `tidemark:` section (users with roles,
    /// bearer tokens). Re-read on SIGHUP and when it changes; see the
    /// README's "Security" section.
    #[arg(long = "web.config.file", env = "TIDEMARK_WEB_CONFIG_FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Directory holding the WAL and blocks; created if missing.
    #[arg(long, env = "TIDEMARK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// WAL durability: `batch` (fsync before acknowledging, shared by
    /// concurrent writes), `interval` (fsync periodically) or `none`.
    #[arg(long, env = "TIDEMARK_WAL_FSYNC", value_enum, default_value_t = WalFsync::Batch)]
    pub wal_fsync: WalFsync,

    /// Period of background fsyncs with `--wal-fsync=interval` (e.g. `1s`, `200ms`).
    #[arg(long, env = "TIDEMARK_WAL_FSYNC_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub wal_fsync_interval: Duration,

    /// Compress the WAL, as Prometheus's `--storage.tsdb.wal-compression`:
    /// float samples as run-chained samples records (each against its
    /// series' previous sample, about 1.1 bytes a sample for node_exporter
    /// data instead of 8), other records snappy-compressed; either setting reads
    /// both. `--storage.wal-compression=false` turns it off.
    #[arg(long = "storage.wal-compression", env = "TIDEMARK_STORAGE_WAL_COMPRESSION", default_value_t = true, action = clap::ArgAction::Set)]
    pub wal_compression: bool,

    /// WAL segment size in bytes before a new segment is started.
    #[arg(long, env = "TIDEMARK_WAL_SEGMENT_SIZE", default_value_t = 128 << 20)]
    pub wal_segment_size: u64,

    /// Maximum number of series per metric name; new series past it are
    /// rejected. 0 means unlimited.
    #[arg(long, env = "TIDEMARK_MAX_SERIES_PER_METRIC", default_value_t = 0)]
    pub max_series_per_metric: usize,

    /// Largest accepted remote-write body (compressed), in bytes; larger
    /// requests get 413.
    #[arg(long, env = "TIDEMARK_MAX_WRITE_BODY_BYTES", default_value_t = 32 << 20)]
    pub max_write_body_bytes: usize,

    /// Largest accepted remote-write body after snappy decompression, in
    /// bytes, checked before decompressing; larger requests get 400.
    #[arg(long, env = "TIDEMARK_MAX_WRITE_DECOMPRESSED_BYTES", default_value_t = 64 << 20)]
    pub max_write_decompressed_bytes: usize,

    /// Remote-write requests decoded and stored at once; more wait their
    /// turn (as VictoriaMetrics's `-maxConcurrentInserts`).
    #[arg(
        long = "write.max-concurrency",
        env = "TIDEMARK_WRITE_MAX_CONCURRENCY",
        default_value_t = 64
    )]
    pub write_max_concurrency: usize,

    /// Longest a remote write waits for its turn before it gets a
    /// retryable 503 (as VictoriaMetrics's `-insert.maxQueueDuration`).
    #[arg(long = "write.max-queue-duration", env = "TIDEMARK_WRITE_MAX_QUEUE_DURATION", default_value = "1m", value_parser = parse_duration)]
    pub write_max_queue_duration: Duration,

    /// Most samples in one remote-write request, counted before decoding
    /// (empty ones included; a native histogram counts as 16 plus one per
    /// bucket span, delta and count); larger requests get 400.
    #[arg(
        long,
        env = "TIDEMARK_MAX_WRITE_SAMPLES_PER_REQUEST",
        default_value_t = 1_000_000
    )]
    pub max_write_samples_per_request: usize,

    /// Most series in one remote-write request; larger requests get 400.
    #[arg(
        long,
        env = "TIDEMARK_MAX_WRITE_SERIES_PER_REQUEST",
        default_value_t = 100_000
    )]
    pub max_write_series_per_request: usize,

    /// Most label pairs (of all series and exemplars; for 2.0 also symbol
    /// table entries) in one remote-write request; larger requests get 400.
    #[arg(
        long,
        env = "TIDEMARK_MAX_WRITE_LABELS_PER_REQUEST",
        default_value_t = 2_000_000
    )]
    pub max_write_labels_per_request: usize,

    /// Most exemplars in one remote-write request; larger requests get 400.
    #[arg(
        long,
        env = "TIDEMARK_MAX_WRITE_EXEMPLARS_PER_REQUEST",
        default_value_t = 100_000
    )]
    pub max_write_exemplars_per_request: usize,

    /// Most metadata entries in one remote-write request; larger requests
    /// get 400.
    #[arg(
        long,
        env = "TIDEMARK_MAX_WRITE_METADATA_PER_REQUEST",
        default_value_t = 100_000
    )]
    pub max_write_metadata_per_request: usize,

    /// Most labels of one series (`__name__` included); a series with more
    /// is rejected (partial write, 400).
    #[arg(
        long,
        env = "TIDEMARK_MAX_LABELS_PER_TIMESERIES",
        default_value_t = 100
    )]
    pub max_labels_per_timeseries: usize,

    /// Longest label name, in bytes; a series with a longer one is rejected
    /// (partial write, 400).
    #[arg(long, env = "TIDEMARK_MAX_LABEL_NAME_LEN", default_value_t = 256)]
    pub max_label_name_len: usize,

    /// Longest label value (the metric name included), in bytes; a series
    /// with a longer one is rejected (partial write, 400).
    #[arg(long, env = "TIDEMARK_MAX_LABEL_VALUE_LEN", default_value_t = 4096)]
    pub max_label_value_len: usize,

    /// Longest label set of an exemplar, in characters of names and values
    /// together (Prometheus's limit is 128); a longer exemplar is dropped
    /// and counted, the samples beside it are stored.
    #[arg(long, env = "TIDEMARK_MAX_EXEMPLAR_LABELS_LEN", default_value_t = 128)]
    pub max_exemplar_labels_len: usize,

    /// Longest metadata help or unit text, in bytes; a longer entry is
    /// dropped and counted, the samples beside it are stored.
    #[arg(long, env = "TIDEMARK_MAX_METADATA_TEXT_LEN", default_value_t = 4096)]
    pub max_metadata_text_len: usize,

    /// Largest remote-read request after snappy decompression, in bytes,
    /// checked before decompressing; larger requests get 400.
    #[arg(
        long = "storage.remote.read-max-decompressed-bytes",
        env = "TIDEMARK_STORAGE_REMOTE_READ_MAX_DECOMPRESSED_BYTES",
        default_value_t = 32 << 20
    )]
    pub remote_read_max_decompressed_bytes: usize,

    /// Most samples one remote-read request may return (as Prometheus's
    /// flag); past it the read fails with 400. 0 means no limit.
    #[arg(
        long = "storage.remote.read-sample-limit",
        env = "TIDEMARK_STORAGE_REMOTE_READ_SAMPLE_LIMIT",
        default_value_t = 50_000_000
    )]
    pub remote_read_sample_limit: usize,

    /// Largest frame of a streamed remote-read response, in bytes of
    /// chunks (as Prometheus's flag); a series larger than that is split
    /// over several frames, and a frame exceeds it by at most one chunk.
    #[arg(
        long = "storage.remote.read-max-bytes-in-frame",
        env = "TIDEMARK_STORAGE_REMOTE_READ_MAX_BYTES_IN_FRAME",
        default_value_t = 1 << 20
    )]
    pub remote_read_max_bytes_in_frame: usize,

    /// Longest a query may run; a request's `timeout` parameter can only
    /// shorten it.
    #[arg(long = "query.timeout", env = "TIDEMARK_QUERY_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// Most samples a single query may hold in memory; past it the query
    /// fails with 422.
    #[arg(
        long = "query.max-samples",
        env = "TIDEMARK_QUERY_MAX_SAMPLES",
        default_value_t = 50_000_000
    )]
    pub query_max_samples: usize,

    /// How far back an instant selector looks for the latest sample.
    #[arg(long = "query.lookback-delta", env = "TIDEMARK_QUERY_LOOKBACK_DELTA", default_value = "5m", value_parser = parse_duration)]
    pub query_lookback_delta: Duration,

    /// Largest `lookback_delta` a query may ask for (a longer one gets
    /// 400); never below `--query.lookback-delta`.
    #[arg(long = "query.max-lookback-delta", env = "TIDEMARK_QUERY_MAX_LOOKBACK_DELTA", default_value = "1d", value_parser = parse_duration)]
    pub query_max_lookback_delta: Duration,

    /// Most queries (and series/labels/status-tsdb reads) run at once;
    /// more wait, within their time-out, for a slot (503 when it passes).
    #[arg(
        long = "query.max-concurrency",
        env = "TIDEMARK_QUERY_MAX_CONCURRENCY",
        default_value_t = 20
    )]
    pub query_max_concurrency: usize,

    /// Rule files to load (paths or globs, Prometheus's rule file format);
    /// repeat the flag for more. Reloaded on SIGHUP and `POST /-/reload`.
    #[arg(
        long = "rule-files",
        env = "TIDEMARK_RULE_FILES",
        value_delimiter = ','
    )]
    pub rule_files: Vec<String>,

    /// Evaluation interval of rule groups that set none (Prometheus's
    /// `global.evaluation_interval`).
    #[arg(long = "rules.evaluation-interval", env = "TIDEMARK_RULES_EVALUATION_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub rules_evaluation_interval: Duration,

    /// How far back an alert's `for` state is restored from after a restart
    /// (Prometheus's `--rules.alert.for-outage-tolerance`).
    #[arg(long = "rules.alert.for-outage-tolerance", env = "TIDEMARK_RULES_ALERT_FOR_OUTAGE_TOLERANCE", default_value = "1h", value_parser = parse_duration)]
    pub rules_alert_for_outage_tolerance: Duration,

    /// Least `for` an alert still has to wait after a restore; alerts whose
    /// `for` is at most this start over (Prometheus's
    /// `--rules.alert.for-grace-period`).
    #[arg(long = "rules.alert.for-grace-period", env = "TIDEMARK_RULES_ALERT_FOR_GRACE_PERIOD", default_value = "10m", value_parser = parse_duration)]
    pub rules_alert_for_grace_period: Duration,

    /// How often a still-firing alert is sent to Alertmanager again
    /// (Prometheus's `--rules.alert.resend-delay`).
    #[arg(long = "rules.alert.resend-delay", env = "TIDEMARK_RULES_ALERT_RESEND_DELAY", default_value = "1m", value_parser = parse_duration)]
    pub rules_alert_resend_delay: Duration,

    /// Alertmanager base URL to send alerts to (API v2), e.g.
    /// `http://127.0.0.1:9093`; repeat the flag for more.
    #[arg(
        long = "alertmanager.url",
        env = "TIDEMARK_ALERTMANAGER_URL",
        value_delimiter = ','
    )]
    pub alertmanager_url: Vec<String>,

    /// Most alerts waiting to be sent to Alertmanager; the oldest are
    /// dropped (and counted) beyond it.
    #[arg(
        long = "alertmanager.notification-queue-capacity",
        env = "TIDEMARK_ALERTMANAGER_NOTIFICATION_QUEUE_CAPACITY",
        default_value_t = 10_000
    )]
    pub alertmanager_queue_capacity: usize,

    /// A label added to alerts sent to Alertmanager and seen by templates
    /// as `$externalLabels` (`name=value`); repeat the flag for more
    /// (Prometheus's `global.external_labels`).
    /// With `--objstore.config.file` they also identify this node's blocks
    /// in the bucket (`thanos.labels` of each uploaded `meta.json`), as
    /// Thanos's sidecar takes Prometheus's external labels.
    #[arg(long = "external-label", alias = "storage.external-label", env = "TIDEMARK_EXTERNAL_LABELS", value_delimiter = ',', value_parser = parse_external_label)]
    pub external_labels: Vec<(String, String)>,

    /// How long to keep data: blocks ending this far behind the newest
    /// sample are deleted (as Prometheus's `--storage.tsdb.retention.time`).
    /// `0s` keeps everything.
    #[arg(long, env = "TIDEMARK_RETENTION", default_value = "15d", value_parser = parse_duration)]
    pub retention: Duration,

    /// How far behind the newest sample the head holds a float sample that
    /// is older than its series' newest one is still stored, out of order
    /// (Prometheus's `storage.tsdb.out_of_order_time_window`), for OTLP
    /// senders that retry, backfills and multi-replica senders. `0s` (the
    /// default) refuses such samples as out of order or too old.
    #[arg(
        long = "storage.out-of-order-time-window",
        env = "TIDEMARK_STORAGE_OUT_OF_ORDER_TIME_WINDOW",
        default_value = "0s",
        value_parser = parse_duration
    )]
    pub out_of_order_time_window: Duration,

    /// Most bytes of blocks and WAL to keep; the oldest blocks are deleted
    /// past it. Units B, KB, MB, GB, TB, PB, EB (powers of 1024, as
    /// Prometheus's `--storage.tsdb.retention.size`); `0` means no limit.
    #[arg(long, env = "TIDEMARK_RETENTION_SIZE", default_value = "0", value_parser = parse_bytes)]
    pub retention_size: u64,

    /// How often background compaction checks for head data to persist,
    /// blocks to merge and blocks past retention.
    #[arg(long, env = "TIDEMARK_COMPACTION_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub compaction_interval: Duration,

    /// Object storage to ship blocks to, in Thanos's bucket config YAML
    /// (`type: S3` or `type: FILESYSTEM`). Every block this node writes
    /// from the head is uploaded (meta.json last), local merges and
    /// retention wait until a block is shipped, and at least one
    /// `--external-label` must name this node's stream.
    #[arg(long = "objstore.config.file", env = "TIDEMARK_OBJSTORE_CONFIG_FILE")]
    pub objstore_config_file: Option<PathBuf>,

    /// How often the shipper looks for unshipped blocks besides being
    /// woken by each new block.
    #[arg(long = "shipper.sync-interval", env = "TIDEMARK_SHIPPER_SYNC_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub shipper_sync_interval: Duration,

    /// Longest pause between retries of a failed upload (the pause starts
    /// at 1s and doubles).
    #[arg(long = "shipper.max-backoff", env = "TIDEMARK_SHIPPER_MAX_BACKOFF", default_value = "5m", value_parser = parse_duration)]
    pub shipper_max_backoff: Duration,

    /// Most exemplars kept (as Prometheus's flag): a ring in the head,
    /// logged in the WAL with their samples, the oldest overwritten when
    /// full. 0 turns exemplar storage off.
    #[arg(
        long = "storage.exemplars.max-exemplars",
        env = "TIDEMARK_STORAGE_EXEMPLARS_MAX_EXEMPLARS",
        default_value_t = 100_000
    )]
    pub max_exemplars: usize,

    /// Most metric families whose metadata (type, help, unit) is kept;
    /// metadata of further families is dropped and counted. 0 turns
    /// metadata storage off.
    #[arg(
        long = "storage.metadata.max-families",
        env = "TIDEMARK_STORAGE_METADATA_MAX_FAMILIES",
        default_value_t = 100_000
    )]
    pub metadata_max_families: usize,

    /// Most bytes of metadata text (family names, help and unit texts) kept;
    /// entries past it are dropped and counted. 0 turns metadata storage off.
    #[arg(
        long = "storage.metadata.max-bytes",
        env = "TIDEMARK_STORAGE_METADATA_MAX_BYTES",
        default_value_t = 32 << 20
    )]
    pub metadata_max_bytes: usize,

    /// Write the in-memory head to `head_snapshot` on clean shutdown, so
    /// the next start loads it instead of replaying the whole WAL (the WAL
    /// is kept either way). `--head-snapshot-on-shutdown=false` turns it off.
    #[arg(long, env = "TIDEMARK_HEAD_SNAPSHOT_ON_SHUTDOWN", default_value_t = true, action = clap::ArgAction::Set)]
    pub head_snapshot_on_shutdown: bool,

    /// Write everything the in-memory head holds to blocks on clean
    /// shutdown and empty the WAL, so the data directory at rest holds
    /// blocks (about 1 byte per sample) instead of the WAL plus a head
    /// snapshot, and the next start replays nothing. Samples of series that
    /// lagged behind the newest are still accepted after the restart (the
    /// head keeps its floor). Takes precedence over
    /// `--head-snapshot-on-shutdown`; `=false` keeps the head in the WAL
    /// (and the snapshot).
    #[arg(
        long = "storage.persist-head-on-shutdown",
        env = "TIDEMARK_STORAGE_PERSIST_HEAD_ON_SHUTDOWN",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub persist_head_on_shutdown: bool,

    /// Enable the admin endpoints under `/api/v1/admin/` (as Prometheus's
    /// `--web.enable-admin-api`).
    #[arg(long, env = "TIDEMARK_ENABLE_ADMIN_API")]
    pub enable_admin_api: bool,

    /// Store a zero sample at a series' created timestamp (remote write 2.0
    /// `start_timestamp`, OTLP `start_time_unix_nano` of cumulative sums
    /// and histograms) when it is newer than the series' newest sample, so
    /// `rate` and `increase` count from zero after a restart of the
    /// instrumented process (Prometheus's
    /// `--enable-feature=created-timestamp-zero-ingestion`).
    #[arg(long, env = "TIDEMARK_ENABLE_CREATED_TIMESTAMP_ZERO_INGESTION")]
    pub enable_created_timestamp_zero_ingestion: bool,

    /// How OTLP metric and label names are translated (Prometheus's
    /// `otlp.translation_strategy`): `UnderscoreEscapingWithSuffixes`
    /// (default), `UnderscoreEscapingWithoutSuffixes`,
    /// `NoUTF8EscapingWithSuffixes` or `NoTranslation`.
    #[arg(
        long = "otlp.translation-strategy",
        env = "TIDEMARK_OTLP_TRANSLATION_STRATEGY",
        default_value = "UnderscoreEscapingWithSuffixes",
        value_parser = clap::value_parser!(TranslationStrategy)
    )]
    pub otlp_translation_strategy: TranslationStrategy,

    /// OTLP resource attributes added as labels to every point of the
    /// resource, comma-separated (Prometheus's
    /// `otlp.promote_resource_attributes`).
    #[arg(
        long = "otlp.promote-resource-attributes",
        env = "TIDEMARK_OTLP_PROMOTE_RESOURCE_ATTRIBUTES",
        value_delimiter = ',',
        value_parser = attribute_name,
        conflicts_with = "otlp_promote_all_resource_attributes"
    )]
    pub otlp_promote_resource_attributes: Vec<String>,

    /// Add every OTLP resource attribute but those of
    /// `--otlp.ignore-resource-attributes` as labels (Prometheus's
    /// `otlp.promote_all_resource_attributes`).
    #[arg(
        long = "otlp.promote-all-resource-attributes",
        env = "TIDEMARK_OTLP_PROMOTE_ALL_RESOURCE_ATTRIBUTES"
    )]
    pub otlp_promote_all_resource_attributes: bool,

    /// Resource attributes not promoted by
    /// `--otlp.promote-all-resource-attributes`, comma-separated
    /// (Prometheus's `otlp.ignore_resource_attributes`).
    #[arg(
        long = "otlp.ignore-resource-attributes",
        env = "TIDEMARK_OTLP_IGNORE_RESOURCE_ATTRIBUTES",
        value_delimiter = ',',
        value_parser = attribute_name,
        requires = "otlp_promote_all_resource_attributes"
    )]
    pub otlp_ignore_resource_attributes: Vec<String>,

    /// Keep `service.name`, `service.namespace` and `service.instance.id`
    /// as labels of `target_info` too (Prometheus's
    /// `otlp.keep_identifying_resource_attributes`).
    #[arg(
        long = "otlp.keep-identifying-resource-attributes",
        env = "TIDEMARK_OTLP_KEEP_IDENTIFYING_RESOURCE_ATTRIBUTES"
    )]
    pub otlp_keep_identifying_resource_attributes: bool,

    /// Add `otel_scope_name`, `otel_scope_version`, `otel_scope_schema_url`
    /// and `otel_scope_<attribute>` labels from the instrumentation scope
    /// (Prometheus's `otlp.promote_scope_metadata`).
    #[arg(
        long = "otlp.promote-scope-metadata",
        env = "TIDEMARK_OTLP_PROMOTE_SCOPE_METADATA"
    )]
    pub otlp_promote_scope_metadata: bool,

    /// Store OTLP delta sums and histograms as they are instead of refusing
    /// them (Prometheus's experimental
    /// `--enable-feature=otlp-native-delta-ingestion`): metadata type
    /// `unknown`, start times ignored; query them with `sum_over_time`,
    /// not `rate`.
    #[arg(
        long = "otlp.native-delta-ingestion",
        env = "TIDEMARK_OTLP_NATIVE_DELTA_INGESTION"
    )]
    pub otlp_native_delta_ingestion: bool,

    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or a
    /// tracing directive such as `tidemark=debug,info`.
    #[arg(long, env = "TIDEMARK_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl From<&Config> for Options {
    fn from(c: &Config) -> Self {
        Options {
            wal: WalOptions {
                segment_size: c.wal_segment_size,
                fsync: match c.wal_fsync {
                    WalFsync::Batch => FsyncPolicy::Batch,
                    WalFsync::Interval => FsyncPolicy::Interval(c.wal_fsync_interval),
                    WalFsync::None => FsyncPolicy::Never,
                },
                compression: c.wal_compression,
            },
            max_series_per_metric: c.max_series_per_metric,
            retention_ms: c.retention.as_millis().min(i64::MAX as u128) as i64,
            retention_bytes: c.retention_size,
            out_of_order_time_window_ms: c
                .out_of_order_time_window
                .as_millis()
                .min(i64::MAX as u128) as i64,
            head_snapshot_on_close: c.head_snapshot_on_shutdown,
            persist_head_on_close: c.persist_head_on_shutdown,
            max_exemplars: c.max_exemplars,
            max_metadata_families: c.metadata_max_families,
            max_metadata_bytes: c.metadata_max_bytes,
            ..Options::default()
        }
    }
}

impl From<&Config> for TranslateOptions {
    fn from(c: &Config) -> Self {
        TranslateOptions {
            strategy: c.otlp_translation_strategy,
            promote: if c.otlp_promote_all_resource_attributes {
                Promote::AllExcept(c.otlp_ignore_resource_attributes.clone())
            } else if c.otlp_promote_resource_attributes.is_empty() {
                Promote::None
            } else {
                Promote::Only(c.otlp_promote_resource_attributes.clone())
            },
            keep_identifying_resource_attributes: c.otlp_keep_identifying_resource_attributes,
            promote_scope_metadata: c.otlp_promote_scope_metadata,
            native_delta_ingestion: c.otlp_native_delta_ingestion,
            created_zero: c.enable_created_timestamp_zero_ingestion,
            max_target_info_samples: c.max_write_samples_per_request,
        }
    }
}

impl From<&Config> for ReceiverOptions {
    fn from(c: &Config) -> Self {
        ReceiverOptions {
            max_body_bytes: c.max_write_body_bytes,
            max_decompressed_bytes: c.max_write_decompressed_bytes,
            limits: WriteLimits {
                max_samples_per_request: c.max_write_samples_per_request,
                max_series_per_request: c.max_write_series_per_request,
                max_labels_per_request: c.max_write_labels_per_request,
                max_exemplars_per_request: c.max_write_exemplars_per_request,
                max_metadata_per_request: c.max_write_metadata_per_request,
                max_labels_per_series: c.max_labels_per_timeseries,
                max_label_name_len: c.max_label_name_len,
                max_label_value_len: c.max_label_value_len,
                max_exemplar_labels_len: c.max_exemplar_labels_len,
                max_metadata_text_len: c.max_metadata_text_len,
            },
            read: ReadLimits {
                max_decompressed_bytes: c.remote_read_max_decompressed_bytes,
                sample_limit: c.remote_read_sample_limit,
                max_bytes_in_frame: c.remote_read_max_bytes_in_frame,
            },
            created_timestamp_zero_ingestion: c.enable_created_timestamp_zero_ingestion,
            otlp: TranslateOptions::from(c),
            ..ReceiverOptions::default()
        }
    }
}

impl Config {
    /// Every flag with its effective value as a string, by long name, for
    /// `/api/v1/status/flags` and `status/config`.
    pub fn flags(&self) -> Vec<(String, String)> {
        let fsync = match self.wal_fsync {
            WalFsync::Batch => "batch",
            WalFsync::Interval => "interval",
            WalFsync::None => "none",
        };
        [
            ("listen", self.listen.to_string()),
            ("web.max-connections", self.web_max_connections.to_string()),
            (
                "web.read-header-timeout",
                format_duration(self.web_read_header_timeout),
            ),
            ("web.read-timeout", format_duration(self.web_read_timeout)),
            (
                "web.config.file",
                self.web_config_file
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string()),
            ),
            ("data-dir", self.data_dir.display().to_string()),
            ("wal-fsync", fsync.to_string()),
            (
                "wal-fsync-interval",
                format_duration(self.wal_fsync_interval),
            ),
            ("storage.wal-compression", self.wal_compression.to_string()),
            ("wal-segment-size", self.wal_segment_size.to_string()),
            (
                "max-series-per-metric",
                self.max_series_per_metric.to_string(),
            ),
            (
                "max-write-body-bytes",
                self.max_write_body_bytes.to_string(),
            ),
            (
                "max-write-decompressed-bytes",
                self.max_write_decompressed_bytes.to_string(),
            ),
            (
                "write.max-concurrency",
                self.write_max_concurrency.to_string(),
            ),
            (
                "write.max-queue-duration",
                format_duration(self.write_max_queue_duration),
            ),
            (
                "max-write-samples-per-request",
                self.max_write_samples_per_request.to_string(),
            ),
            (
                "max-write-series-per-request",
                self.max_write_series_per_request.to_string(),
            ),
            (
                "max-write-labels-per-request",
                self.max_write_labels_per_request.to_string(),
            ),
            (
                "max-write-exemplars-per-request",
                self.max_write_exemplars_per_request.to_string(),
            ),
            (
                "max-write-metadata-per-request",
                self.max_write_metadata_per_request.to_string(),
            ),
            (
                "max-labels-per-timeseries",
                self.max_labels_per_timeseries.to_string(),
            ),
            ("max-label-name-len", self.max_label_name_len.to_string()),
            ("max-label-value-len", self.max_label_value_len.to_string()),
            (
                "max-exemplar-labels-len",
                self.max_exemplar_labels_len.to_string(),
            ),
            (
                "max-metadata-text-len",
                self.max_metadata_text_len.to_string(),
            ),
            (
                "storage.remote.read-max-decompressed-bytes",
                self.remote_read_max_decompressed_bytes.to_string(),
            ),
            (
                "storage.remote.read-sample-limit",
                self.remote_read_sample_limit.to_string(),
            ),
            (
                "storage.remote.read-max-bytes-in-frame",
                self.remote_read_max_bytes_in_frame.to_string(),
            ),
            ("query.timeout", format_duration(self.query_timeout)),
            ("query.max-samples", self.query_max_samples.to_string()),
            (
                "query.lookback-delta",
                format_duration(self.query_lookback_delta),
            ),
            (
                "query.max-lookback-delta",
                format_duration(self.query_max_lookback_delta),
            ),
            (
                "query.max-concurrency",
                self.query_max_concurrency.to_string(),
            ),
            ("rule-files", self.rule_files.join(",")),
            (
                "rules.evaluation-interval",
                format_duration(self.rules_evaluation_interval),
            ),
            (
                "rules.alert.for-outage-tolerance",
                format_duration(self.rules_alert_for_outage_tolerance),
            ),
            (
                "rules.alert.for-grace-period",
                format_duration(self.rules_alert_for_grace_period),
            ),
            (
                "rules.alert.resend-delay",
                format_duration(self.rules_alert_resend_delay),
            ),
            ("alertmanager.url", self.alertmanager_url.join(",")),
            (
                "alertmanager.notification-queue-capacity",
                self.alertmanager_queue_capacity.to_string(),
            ),
            (
                "external-label",
                self.external_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("retention", format_duration(self.retention)),
            ("retention-size", self.retention_size.to_string()),
            (
                "storage.out-of-order-time-window",
                format_duration(self.out_of_order_time_window),
            ),
            (
                "compaction-interval",
                format_duration(self.compaction_interval),
            ),
            (
                "objstore.config.file",
                self.objstore_config_file
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string()),
            ),
            (
                "shipper.sync-interval",
                format_duration(self.shipper_sync_interval),
            ),
            (
                "shipper.max-backoff",
                format_duration(self.shipper_max_backoff),
            ),
            (
                "storage.exemplars.max-exemplars",
                self.max_exemplars.to_string(),
            ),
            (
                "storage.metadata.max-families",
                self.metadata_max_families.to_string(),
            ),
            (
                "storage.metadata.max-bytes",
                self.metadata_max_bytes.to_string(),
            ),
            (
                "head-snapshot-on-shutdown",
                self.head_snapshot_on_shutdown.to_string(),
            ),
            (
                "storage.persist-head-on-shutdown",
                self.persist_head_on_shutdown.to_string(),
            ),
            ("enable-admin-api", self.enable_admin_api.to_string()),
            (
                "enable-created-timestamp-zero-ingestion",
                self.enable_created_timestamp_zero_ingestion.to_string(),
            ),
            (
                "otlp.translation-strategy",
                self.otlp_translation_strategy.to_string(),
            ),
            (
                "otlp.promote-resource-attributes",
                self.otlp_promote_resource_attributes.join(","),
            ),
            (
                "otlp.promote-all-resource-attributes",
                self.otlp_promote_all_resource_attributes.to_string(),
            ),
            (
                "otlp.ignore-resource-attributes",
                self.otlp_ignore_resource_attributes.join(","),
            ),
            (
                "otlp.keep-identifying-resource-attributes",
                self.otlp_keep_identifying_resource_attributes.to_string(),
            ),
            (
                "otlp.promote-scope-metadata",
                self.otlp_promote_scope_metadata.to_string(),
            ),
            (
                "otlp.native-delta-ingestion",
                self.otlp_native_delta_ingestion.to_string(),
            ),
            ("log-level", self.log_level.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl From<&Config> for HttpLimits {
    fn from(c: &Config) -> Self {
        HttpLimits {
            max_connections: c.web_max_connections,
            read_header_timeout: c.web_read_header_timeout,
            idle_timeout: c.web_read_timeout,
            ..HttpLimits::default()
        }
    }
}

impl From<&Config> for EngineOptions {
    fn from(c: &Config) -> Self {
        EngineOptions {
            lookback_delta_ms: c.query_lookback_delta.as_millis() as i64,
            max_samples: c.query_max_samples,
            timeout: c.query_timeout,
            max_lookback_delta_ms: c
                .query_max_lookback_delta
                .max(c.query_lookback_delta)
                .as_millis()
                .min(i64::MAX as u128) as i64,
            max_concurrency: c.query_max_concurrency.max(1),
            ..EngineOptions::default()
        }
    }
}

impl From<&Config> for ApiOptions {
    fn from(c: &Config) -> Self {
        ApiOptions {
            engine: EngineOptions::from(c),
            enable_admin_api: c.enable_admin_api,
            flags: c.flags(),
            storage_retention: retention_text(c.retention, c.retention_size),
            write: WriteConcurrency {
                max_concurrency: c.write_max_concurrency,
                max_queue_duration: c.write_max_queue_duration,
            },
            // Read by `server::run`, which can report a broken file.
            web: crate::web_config::WebConfig::default(),
            notifier: (!c.alertmanager_url.is_empty()).then(|| crate::rules::NotifierOptions {
                alertmanagers: c.alertmanager_url.clone(),
                queue_capacity: c.alertmanager_queue_capacity,
                external_labels: c.external_labels.iter().cloned().collect(),
            }),
            read_only: false,
            query_role: false,
            external_labels: c.external_labels.iter().cloned().collect(),
        }
    }
}

/// `status/runtimeinfo`'s `storageRetention`, as Prometheus words it:
/// `15d`, `50GiB`, `15d or 50GiB`, or `unlimited`.
pub fn retention_text(time: Duration, bytes: u64) -> String {
    let size = (bytes > 0).then(|| {
        let units = [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        units
            .iter()
            .find(|(_, u)| bytes.is_multiple_of(*u))
            .map_or(format!("{bytes}B"), |(name, u)| {
                format!("{}{name}", bytes / u)
            })
    });
    let time = (!time.is_zero()).then(|| format_duration(time));
    match (time, size) {
        (Some(t), Some(s)) => format!("{t} or {s}"),
        (Some(t), None) => t,
        (None, Some(s)) => s,
        (None, None) => "unlimited".to_string(),
    }
}

/// The configuration reference as a Markdown table, generated from the clap
/// definitions above (one row per flag: flag, environment variable,
/// default, help text), so the README cannot drift from `tidemark --help`.
/// `tests/readme.rs` compares the README's section with it;
/// `scripts/update-readme` rewrites the section.
pub fn reference_markdown() -> String {
    use clap::CommandFactory;
    let cmd = Config::command();
    let mut out = String::from(
        "| flag | environment variable | default | meaning |\n| --- | --- | --- | --- |\n",
    );
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        let flag = if takes_value {
            let value = arg
                .get_value_names()
                .and_then(|v| v.first())
                .map_or_else(|| "VALUE".to_string(), |v| v.to_string());
            format!("`--{long}=<{value}>`")
        } else {
            format!("`--{long}`")
        };
        let env = arg
            .get_env()
            .map_or_else(String::new, |e| format!("`{}`", e.to_string_lossy()));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match (takes_value, defaults.is_empty()) {
            (false, _) => "off".to_string(),
            (true, true) => String::new(),
            (true, false) => format!("`{}`", defaults.join(",")),
        };
        let mut help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !help.is_empty() && !help.ends_with(['.', '!', '?']) {
            // clap drops the final period of a one-sentence doc comment.
            help.push('.');
        }
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if !values.is_empty() && takes_value {
            help.push_str(&format!(" One of {}.", values.join(", ")));
        }
        out.push_str(&format!(
            "| {flag} | {env} | {default} | {} |\n",
            help.replace('|', "\\|")
        ));
    }
    out
}

/// The rows of [`reference_markdown`] for the `--web.*` flags (the HTTP
/// server, TLS and authentication), for the README's "Security" section.
pub fn reference_markdown_web() -> String {
    let all = reference_markdown();
    let mut lines = all.lines();
    let mut out: String = lines.by_ref().take(2).map(|l| format!("{l}\n")).collect();
    for l in lines.filter(|l| l.starts_with("| `--web.")) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Formats a duration as Prometheus prints one (`2m`, `1h30m`, `250ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    crate::model::format_duration_ms(d.as_millis() as u64)
}

/// Parses `name=value` of `--external-label`: a valid label name and a
/// non-empty value.
///
/// # Errors
/// A message naming what is wrong, for clap to print.
pub fn parse_external_label(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected name=value"))?;
    let valid = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if name.is_empty() || !valid || name.starts_with("__") {
        return Err(format!("{name:?} is not a valid label name"));
    }
    if value.is_empty() {
        return Err(format!("label {name:?} has an empty value"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Parses a Prometheus duration (`1h30m`, `250ms`; units largest first).
///
/// # Errors
/// A message naming what is wrong, for clap to print.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    match crate::model::parse_duration_ms(s) {
        Some(ms) => Ok(Duration::from_millis(ms as u64)),
        None => Err(format!(
            "invalid duration {s:?}: expected e.g. 30s, 5m, 1h30m, 250ms"
        )),
    }
}

/// Parses a byte size: a number with an optional unit B, KB, MB, GB, TB,
/// PB or EB, powers of 1024 (Prometheus's `units.Base2Bytes`).
///
/// # Errors
/// A message naming what is wrong, for clap to print.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?}: expected e.g. 0, 512MB, 50GB");
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = s[..digits].parse().map_err(|_| bad())?;
    let shift = match &s[digits..] {
        "" | "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        "TB" | "TiB" => 40,
        "PB" | "PiB" => 50,
        "EB" | "EiB" => 60,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// An OTLP resource attribute name in a list flag: trimmed, not empty
/// (Prometheus's `sanitizeAttributes`).
fn attribute_name(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty OTel resource attribute name".into());
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_text_words_it_as_prometheus() {
        let d = |s| Duration::from_secs(s);
        assert_eq!(retention_text(d(15 * 86_400), 0), "15d");
        assert_eq!(retention_text(d(15 * 86_400), 50 << 30), "15d or 50GiB");
        assert_eq!(retention_text(d(0), 512 << 20), "512MiB");
        assert_eq!(retention_text(d(0), 1000), "1000B");
        assert_eq!(retention_text(d(0), 0), "unlimited");
        // What the server reports with its defaults.
        let c = Config::parse_from(["tidemark"]);
        assert_eq!(ApiOptions::from(&c).storage_retention, "15d");
    }

    #[test]
    fn parse_bytes_table() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("512MB"), Ok(512 << 20));
        assert_eq!(parse_bytes("50GB"), Ok(50 << 30));
        assert_eq!(parse_bytes("7"), Ok(7));
        for bad in ["", "GB", "1.5GB", "10XB", "-1", "99999999999EB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_duration_table() {
        let ok = [
            ("1s", 1_000),
            ("250ms", 250),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            ("0s", 0),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "1", "s", "1x", "-1s", "1.5s", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_cover_every_clap_argument() {
        use clap::CommandFactory;
        let c = Config::try_parse_from(["tidemark"]).unwrap();
        let flags = c.flags();
        for arg in Config::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            assert!(
                flags.iter().any(|(k, _)| k == long),
                "flag {long} missing from Config::flags"
            );
        }
        let get = |k: &str| flags.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("query.timeout"), "2m");
        assert_eq!(get("query.lookback-delta"), "5m");
        assert_eq!(get("enable-admin-api"), "false");
        assert_eq!(
            format_duration(Duration::from_millis(5_400_250)),
            "1h30m250ms"
        );
        let e = EngineOptions::from(&c);
        assert_eq!(e.timeout, Duration::from_secs(120));
        assert_eq!(e.lookback_delta_ms, 300_000);
        assert_eq!(e.max_samples, 50_000_000);
        assert_eq!(e.max_concurrency, 20);
        assert_eq!(e.max_lookback_delta_ms, 86_400_000);
        let c = Config::try_parse_from(["tidemark", "--query.lookback-delta=2d"]).unwrap();
        assert_eq!(
            EngineOptions::from(&c).max_lookback_delta_ms,
            2 * 86_400_000
        );
        let c = Config::try_parse_from(["tidemark", "--query.timeout=30s", "--enable-admin-api"])
            .unwrap();
        assert_eq!(EngineOptions::from(&c).timeout, Duration::from_secs(30));
        assert!(ApiOptions::from(&c).enable_admin_api);
    }

    #[test]
    fn reference_markdown_lists_every_flag_with_env_and_default() {
        use clap::CommandFactory;
        let md = reference_markdown();
        for arg in Config::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let row = md
                .lines()
                .find(|l| l.starts_with(&format!("| `--{long}")))
                .unwrap_or_else(|| panic!("--{long} missing:\n{md}"));
            let env = arg.get_env().expect("every flag has a TIDEMARK_* variable");
            assert!(
                row.contains(&format!("`{}`", env.to_string_lossy())),
                "{row}"
            );
        }
        assert!(md.contains("| `--listen=<LISTEN>` | `TIDEMARK_LISTEN` | `0.0.0.0:9201` |"));
        assert!(md.contains("| `--enable-admin-api` | `TIDEMARK_ENABLE_ADMIN_API` | off |"));
        assert!(md.contains("One of `batch`, `interval`, `none`."));
    }

    /// Every limit's error message names a flag that exists, and the
    /// defaults of the flags are the layers' defaults.
    #[test]
    fn limit_flags_exist_and_defaults_agree() {
        use clap::CommandFactory;
        let cmd = Config::command();
        for limit in crate::ingest::Limit::ALL {
            let flag = limit.flag().trim_start_matches("--");
            assert!(
                cmd.get_arguments().any(|a| a.get_long() == Some(flag)),
                "{limit:?} names --{flag}, which is not a flag"
            );
        }
        let c = Config::try_parse_from(["tidemark"]).unwrap();
        let r = ReceiverOptions::from(&c);
        assert_eq!(r.limits, WriteLimits::DEFAULT);
        assert_eq!(r.read, ReadLimits::default());
        assert_eq!(
            r.max_decompressed_bytes,
            ReceiverOptions::default().max_decompressed_bytes
        );
        let c = Config::try_parse_from(["tidemark", "--max-label-value-len=10"]).unwrap();
        assert_eq!(ReceiverOptions::from(&c).limits.max_label_value_len, 10);
    }

    #[test]
    fn defaults_and_env_names() {
        let c = Config::try_parse_from(["tidemark"]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9201");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.wal_fsync, WalFsync::Batch);
        let o = Options::from(&c);
        assert_eq!(o.wal.fsync, FsyncPolicy::Batch);
        let c = Config::try_parse_from([
            "tidemark",
            "--wal-fsync=interval",
            "--wal-fsync-interval=200ms",
        ])
        .unwrap();
        assert_eq!(
            Options::from(&c).wal.fsync,
            FsyncPolicy::Interval(Duration::from_millis(200))
        );
        assert!(Config::try_parse_from(["tidemark", "--wal-fsync=sometimes"]).is_err());
    }

    #[test]
    fn otlp_flags_as_prometheus_otlp_config() {
        let c = Config::try_parse_from(["tidemark"]).unwrap();
        assert_eq!(TranslateOptions::from(&c), TranslateOptions::default());
        let c = Config::try_parse_from([
            "tidemark",
            "--otlp.translation-strategy=NoUTF8EscapingWithSuffixes",
            "--otlp.promote-resource-attributes=k8s.pod.name, cloud.region",
            "--otlp.keep-identifying-resource-attributes",
            "--otlp.promote-scope-metadata",
            "--otlp.native-delta-ingestion",
        ])
        .unwrap();
        let o = TranslateOptions::from(&c);
        assert_eq!(o.strategy, TranslationStrategy::NoUtf8EscapingWithSuffixes);
        assert_eq!(
            o.promote,
            Promote::Only(vec!["k8s.pod.name".into(), "cloud.region".into()])
        );
        assert!(o.keep_identifying_resource_attributes && o.promote_scope_metadata);
        assert!(o.native_delta_ingestion);
        let c = Config::try_parse_from([
            "tidemark",
            "--otlp.promote-all-resource-attributes",
            "--otlp.ignore-resource-attributes=host.name",
        ])
        .unwrap();
        assert_eq!(
            TranslateOptions::from(&c).promote,
            Promote::AllExcept(vec!["host.name".into()])
        );
        // Prometheus refuses these combinations and names.
        for bad in [
            &["tidemark", "--otlp.translation-strategy=Escaping"][..],
            &["tidemark", "--otlp.ignore-resource-attributes=a"],
            &[
                "tidemark",
                "--otlp.promote-all-resource-attributes",
                "--otlp.promote-resource-attributes=a",
            ],
            &["tidemark", "--otlp.promote-resource-attributes=a,,b"],
        ] {
            assert!(Config::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
