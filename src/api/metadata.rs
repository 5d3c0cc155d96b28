//! `GET /api/v1/metadata`: metric metadata (type, help, unit) as received
//! by remote write, in Prometheus's shape
//! `{"<metric>":[{"type","help","unit"}]}` with `metric`, `limit` and
//! `limit_per_metric` (`web/api/v1/api.go` `metricMetadata`). Reads the
//! receiver's store only.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::response;
use crate::api::AppState;

/// A numeric parameter where negative means "no limit", as Prometheus.
fn signed_limit(params: &Params, name: &str, err: &'static str) -> Result<i64, ApiError> {
    params
        .get(name)
        .map_or(Ok(-1), |s| s.parse().map_err(|_| ApiError::BadLimit(err)))
}

pub(crate) async fn metadata(
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = signed_limit(&params, "limit", "limit must be a number")?;
    // The store keeps one entry (the newest) per family, which every
    // `limit_per_metric` admits (Prometheus treats ≤ 0 as no limit), so
    // the parameter is only validated.
    signed_limit(
        &params,
        "limit_per_metric",
        "limit_per_metric must be a number",
    )?;
    let receiver = state.require_receiver()?;
    let entries = receiver.metadata().get(params.get("metric"), 0);
    let mut out = String::from("{");
    for (i, m) in entries.iter().enumerate() {
        if limit >= 0 && i as i64 >= limit {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        response::push_json_str(&mut out, &m.metric);
        out.push_str(":[{\"type\":");
        response::push_json_str(&mut out, m.metric_type);
        out.push_str(",\"help\":");
        response::push_json_str(&mut out, &m.help);
        out.push_str(",\"unit\":");
        response::push_json_str(&mut out, &m.unit);
        out.push_str("}]");
    }
    out.push('}');
    Ok(response::ok(&out, &[]))
}
