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
use crate::api::partial_param;
use crate::api::query::run_guarded;
use crate::api::response;
use crate::api::AppState;
use crate::promql::Source;

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
    let per_metric = signed_limit(
        &params,
        "limit_per_metric",
        "limit_per_metric must be a number",
    )?;
    if let Some(source) = state.fanout_source() {
        return fanned_out(&state, source, params, limit, per_metric).await;
    }
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
        out.push_str(":[");
        push_entry(&mut out, m.metric_type, &m.help, &m.unit);
        out.push(']');
    }
    out.push('}');
    Ok(response::ok(&out, &[]))
}

fn push_entry(out: &mut String, metric_type: &str, help: &str, unit: &str) {
    out.push_str("{\"type\":");
    response::push_json_str(out, metric_type);
    out.push_str(",\"help\":");
    response::push_json_str(out, help);
    out.push_str(",\"unit\":");
    response::push_json_str(out, unit);
    out.push('}');
}

/// The query role: every endpoint's metadata, merged (distinct entries
/// per family, as Prometheus lists them), `limit` families and
/// `limit_per_metric` entries each.
async fn fanned_out(
    state: &AppState,
    source: Arc<dyn Source>,
    params: Params,
    limit: i64,
    per_metric: i64,
) -> Result<Response, ApiError> {
    let source = source
        .for_request(partial_param(&params)?)
        .unwrap_or(source);
    let engine = state.engine().clone();
    let body = run_guarded(&engine, engine.options().timeout, move |budget| {
        let got = source
            .metadata(params.get("metric"), budget)
            .unwrap_or_else(|| Ok(Default::default()))?;
        let mut out = String::from("{");
        let mut families = 0i64;
        let mut i = 0;
        while i < got.data.len() {
            let name = &got.data[i].metric;
            let n = got.data[i..]
                .iter()
                .take_while(|m| &m.metric == name)
                .count();
            if limit < 0 || families < limit {
                if families > 0 {
                    out.push(',');
                }
                response::push_json_str(&mut out, name);
                out.push_str(":[");
                for (k, m) in got.data[i..i + n].iter().enumerate() {
                    if per_metric > 0 && k as i64 >= per_metric {
                        break;
                    }
                    if k > 0 {
                        out.push(',');
                    }
                    push_entry(&mut out, &m.metric_type, &m.help, &m.unit);
                }
                out.push(']');
                families += 1;
            }
            i += n;
        }
        out.push('}');
        Ok(response::success_body(&out, &got.warnings, &[]))
    })
    .await?;
    Ok(response::json(body))
}
