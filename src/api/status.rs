//! `/api/v1/status/*` (buildinfo, config, flags, runtimeinfo, tsdb).
//! Shapes as Prometheus's `web/api/v1/api.go` (`serveBuildInfo`,
//! `serveConfig`, `serveFlags`, `serveRuntimeInfo`, `serveTSDBStatus`). `status/tsdb` walks every series,
//! so it runs through [`run_guarded`] (a concurrency slot, the query
//! time-out).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::query::run_guarded;
use crate::api::response;
use crate::api::AppState;

/// The Prometheus version we claim. Grafana's datasource maps a reported
/// version to the closest entry of its hard-coded list of the same
/// major.minor (`PromFlavorVersions.ts`), which tops out at "> 2.50.x"; a
/// 2.5x version therefore enables every feature Grafana gates on
/// Prometheus versions (labels/values with `match[]` since 2.24, …). A 3.x
/// version would fall outside that list. No `features` map is sent: a
/// non-empty one makes Grafana's alerting classify the backend as Mimir.
const PROMETHEUS_VERSION: &str = "2.53.0";

/// `status/tsdb`'s default and maximum `limit`.
const TSDB_DEFAULT_LIMIT: usize = 10;
const TSDB_MAX_LIMIT: usize = 10_000;

/// `GET /api/v1/status/buildinfo`.
pub(crate) async fn buildinfo() -> Response {
    let data = serde_json::json!({
        "version": PROMETHEUS_VERSION,
        "revision": concat!("tidemark-", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    });
    response::ok(&data.to_string(), &[])
}

/// The flags as a YAML mapping (JSON strings are valid YAML scalars).
fn flags_yaml(flags: &[(String, String)]) -> String {
    let mut out =
        String::from("# Tidemark has no configuration file; these are its effective flags.\n");
    for (k, v) in flags {
        out.push_str(k);
        out.push_str(": ");
        response::push_json_str(&mut out, v);
        out.push('\n');
    }
    out
}

/// `GET /api/v1/status/config`: `{"yaml": …}` of the effective flags.
pub(crate) async fn config(State(state): State<Arc<AppState>>) -> Response {
    let mut data = String::from("{\"yaml\":");
    response::push_json_str(&mut data, &flags_yaml(&state.options().flags));
    data.push('}');
    response::ok(&data, &[])
}

/// `GET /api/v1/status/flags`: every flag with its value as a string.
pub(crate) async fn flags(State(state): State<Arc<AppState>>) -> Response {
    let mut data = String::from("{");
    for (i, (k, v)) in state.options().flags.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        response::push_json_str(&mut data, k);
        data.push(':');
        response::push_json_str(&mut data, v);
    }
    data.push('}');
    response::ok(&data, &[])
}

/// RFC 3339 in UTC with nanoseconds trimmed, as Go's `time.Time` JSON.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    crate::model::calendar::rfc3339_utc(d.as_secs() as i64, d.subsec_nanos())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `GET /api/v1/status/runtimeinfo`: Prometheus's field names, with the
/// Go-runtime fields given their closest Tidemark meaning (tasks for
/// goroutines, worker threads for GOMAXPROCS).
pub(crate) async fn runtimeinfo(State(state): State<Arc<AppState>>) -> Response {
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let rt = tokio::runtime::Handle::current().metrics();
    let corruptions = state
        .db()
        .map_or(0, |db| u64::from(db.open_report().wal.damage.is_some()));
    let data = serde_json::json!({
        "startTime": rfc3339(state.started),
        "CWD": cwd,
        "hostname": hostname(),
        "serverTime": rfc3339(SystemTime::now()),
        "reloadConfigSuccess": true,
        "lastConfigTime": rfc3339(state.started),
        "corruptionCount": corruptions,
        "goroutineCount": rt.num_alive_tasks(),
        "GOMAXPROCS": rt.num_workers(),
        "GOMEMLIMIT": i64::MAX,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": state.options().storage_retention,
    });
    response::ok(&data.to_string(), &[])
}

/// `GET /api/v1/status/range` (Tidemark's own, for the query role): the
/// first and last sample times this endpoint holds (`null` when empty),
/// whether it still ingests (a writable node's range grows: the query role
/// never skips it for queries after `minTime`), and its
/// `--external-label`s, which the query role attaches to its series as
/// Thanos does.
pub(crate) async fn range(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let db = state.require_db()?;
    let range = db.time_range();
    let data = serde_json::json!({
        "minTime": range.map(|r| r.0),
        "maxTime": range.map(|r| r.1),
        "writable": !state.options().read_only,
        "externalLabels": state.options().external_labels,
    });
    Ok(response::ok(&data.to_string(), &[]))
}

/// Appends `[{"name":…,"value":…}]` of the `limit` largest counts (ties
/// by name, for stable output).
fn push_top(out: &mut String, counts: HashMap<String, u64>, limit: usize) {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    out.push('[');
    for (i, (name, value)) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        response::push_json_str(out, name);
        let _ = write!(out, ",\"value\":{value}}}");
    }
    out.push(']');
}

/// `GET /api/v1/status/tsdb`: head statistics and the top-`limit`
/// cardinality tables (series per metric name, distinct values per label
/// name, bytes of distinct values per label name, series per label pair),
/// computed in one pass over every head series.
pub(crate) async fn tsdb(
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = match params.get("limit") {
        None => TSDB_DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=TSDB_MAX_LIMIT).contains(&n) => n,
            Ok(n) if n > TSDB_MAX_LIMIT => {
                return Err(ApiError::BadLimit("limit must not exceed 10000"))
            }
            _ => return Err(ApiError::BadLimit("limit must be a positive number")),
        },
    };
    let db = state.require_db()?;
    let engine = state.engine().clone();
    let body = run_guarded(&engine, engine.options().timeout, move |budget| {
        let stats = db.head_stats();
        let mut by_metric: HashMap<String, u64> = HashMap::new();
        let mut by_pair: HashMap<String, u64> = HashMap::new();
        let mut values: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
        for (i, s) in db.querier(i64::MIN, i64::MAX).select(&[]).into_iter().enumerate() {
            if i % 1024 == 0 {
                budget.check("tsdb status")?;
            }
            for l in s.labels().iter() {
                if &*l.name == crate::model::METRIC_NAME {
                    *by_metric.entry(l.value.to_string()).or_default() += 1;
                }
                *by_pair.entry(format!("{}={}", l.name, l.value)).or_default() += 1;
                values
                    .entry(l.name.to_string())
                    .or_default()
                    .insert(l.value.to_string());
            }
        }
        let num_pairs = by_pair.len();
        let value_count: HashMap<String, u64> = values
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect();
        let memory: HashMap<String, u64> = values
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|x| x.len() as u64).sum()))
            .collect();
        let mut out = String::new();
        // An empty head reports Prometheus's sentinels (MaxInt64/MinInt64).
        let _ = write!(
            out,
            "{{\"headStats\":{{\"numSeries\":{},\"numLabelPairs\":{},\"chunkCount\":{},\"minTime\":{},\"maxTime\":{}}}",
            stats.series,
            num_pairs,
            stats.chunks,
            stats.min_t.unwrap_or(i64::MAX),
            stats.max_t.unwrap_or(i64::MIN),
        );
        out.push_str(",\"seriesCountByMetricName\":");
        push_top(&mut out, by_metric, limit);
        out.push_str(",\"labelValueCountByLabelName\":");
        push_top(&mut out, value_count, limit);
        out.push_str(",\"memoryInBytesByLabelName\":");
        push_top(&mut out, memory, limit);
        out.push_str(",\"seriesCountByLabelValuePair\":");
        push_top(&mut out, by_pair, limit);
        out.push('}');
        Ok(response::success_body(&out, &[], &[]))
    })
    .await?;
    Ok(response::json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_like_go() {
        let t = UNIX_EPOCH + Duration::from_millis(1_435_781_451_781);
        assert_eq!(rfc3339(t), "2015-07-01T20:10:51.781Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(rfc3339(t), "2024-02-29T00:00:00Z");
    }
}
