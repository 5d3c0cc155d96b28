//! `GET /api/v1/rules`, `GET /api/v1/alerts` and `POST /-/reload`, shaped
//! as Prometheus's `web/api/v1/api.go` (`rules`, `alerts`) answers them,
//! with its filters (`type`, `rule_name[]`, `group_name[]`, `file[]`,
//! `exclude_alerts`). Without `--rule-files` both list nothing.
//!
//! Owns the JSON shape only; the rules and their state are
//! [`crate::rules`]'s.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value as Json};

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::response;
use crate::api::AppState;
use crate::model::calendar::rfc3339_utc_ms;
use crate::rules::group::{Alert, AlertState, RuleState};
use crate::rules::RuleKind;

/// RFC 3339 of a ms timestamp; Go's zero time when there is none.
fn rfc3339(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => rfc3339_utc_ms(ms),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as alert values are shown.
fn format_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!(
        "{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    )
}

fn labels_json(labels: &crate::model::Labels) -> Json {
    let mut m = Map::new();
    for l in labels.iter() {
        m.insert(l.name.to_string(), Json::String(l.value.to_string()));
    }
    Json::Object(m)
}

fn alert_json(a: &Alert) -> Json {
    let mut o = json!({
        "labels": labels_json(&a.labels),
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(Some(a.active_at)),
        "value": format_e(a.value),
    });
    if let Some(since) = a.keep_firing_since {
        o["keepFiringSince"] = Json::String(rfc3339(Some(since)));
    }
    o
}

fn rule_json(r: &RuleState, exclude_alerts: bool) -> Json {
    let labels: Map<String, Json> = r
        .spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect();
    let mut o = json!({
        "name": r.spec.name(),
        "query": r.spec.expr_text.trim(),
        "labels": labels,
        "health": r.health.health,
        "evaluationTime": r.health.evaluation_seconds,
        "lastEvaluation": rfc3339(r.health.last_evaluation_ms),
    });
    if let Some(e) = &r.health.last_error {
        o["lastError"] = Json::String(e.clone());
    }
    match &r.spec.kind {
        RuleKind::Recording { .. } => {
            o["type"] = "recording".into();
        }
        RuleKind::Alerting {
            for_ms,
            keep_firing_for_ms,
            annotations,
            ..
        } => {
            let mut alerts: Vec<&Alert> = r
                .active
                .values()
                .filter(|a| a.state != AlertState::Inactive)
                .collect();
            alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
            let state = if alerts.iter().any(|a| a.state == AlertState::Firing) {
                "firing"
            } else if alerts.is_empty() {
                "inactive"
            } else {
                "pending"
            };
            o["type"] = "alerting".into();
            o["state"] = state.into();
            o["duration"] = json!(*for_ms as f64 / 1000.0);
            o["keepFiringFor"] = json!(*keep_firing_for_ms as f64 / 1000.0);
            o["annotations"] = json!(annotations);
            if !exclude_alerts {
                o["alerts"] = Json::Array(alerts.into_iter().map(alert_json).collect());
            }
        }
    }
    o
}

/// `GET /api/v1/rules`.
pub(crate) async fn rules(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let kind = p.get("type").unwrap_or("");
    if !matches!(kind, "" | "alert" | "record") {
        return Err(ApiError::InvalidParam {
            name: "type",
            reason: format!("unsupported type {kind:?}: use \"alert\" or \"record\""),
        });
    }
    let exclude_alerts = match p.get("exclude_alerts").unwrap_or("false") {
        "true" => true,
        "false" | "" => false,
        v => {
            return Err(ApiError::InvalidParam {
                name: "exclude_alerts",
                reason: format!("invalid boolean {v:?}"),
            })
        }
    };
    let names = p.all("rule_name[]");
    let groups = p.all("group_name[]");
    let files = p.all("file[]");
    let mut out = Vec::new();
    for g in state.rules().map(|m| m.groups()).unwrap_or_default() {
        let g = g.lock();
        let file = g.spec.file.to_string_lossy();
        if (!groups.is_empty() && !groups.iter().any(|n| *n == g.spec.name))
            || (!files.is_empty() && !files.iter().any(|f| *f == file))
        {
            continue;
        }
        let rules: Vec<Json> = g
            .rules
            .iter()
            .filter(|r| {
                !matches!(
                    (&r.spec.kind, kind),
                    (RuleKind::Alerting { .. }, "record") | (RuleKind::Recording { .. }, "alert")
                )
            })
            .filter(|r| names.is_empty() || names.iter().any(|n| *n == r.spec.name()))
            .map(|r| rule_json(r, exclude_alerts))
            .collect();
        if rules.is_empty() && (!names.is_empty() || !kind.is_empty()) {
            continue;
        }
        out.push(json!({
            "name": g.spec.name,
            "file": file,
            "rules": rules,
            "interval": g.spec.interval_ms as f64 / 1000.0,
            "limit": g.spec.limit,
            "evaluationTime": g.last_duration_seconds,
            "lastEvaluation": rfc3339(g.last_evaluation_ms),
        }));
    }
    Ok(response::ok(&json!({ "groups": out }).to_string(), &[]))
}

/// `GET /api/v1/alerts`: every pending and firing alert.
pub(crate) async fn alerts(State(state): State<Arc<AppState>>) -> Response {
    let mut alerts = Vec::new();
    for g in state.rules().map(|m| m.groups()).unwrap_or_default() {
        let g = g.lock();
        for r in &g.rules {
            let mut active: Vec<&Alert> = r
                .active
                .values()
                .filter(|a| a.state != AlertState::Inactive)
                .collect();
            active.sort_by(|a, b| a.labels.cmp(&b.labels));
            alerts.extend(active.into_iter().map(alert_json));
        }
    }
    response::ok(&json!({ "alerts": alerts }).to_string(), &[])
}

/// `POST /-/reload`: reloads the rule files. 500 naming the file, group
/// and rule when one is invalid (the rules in force stay).
pub(crate) async fn reload(State(state): State<Arc<AppState>>) -> Response {
    let Some(mgr) = state.rules() else {
        return (StatusCode::OK, "no rule files configured\n").into_response();
    };
    match mgr.reload().await {
        Ok(n) => (StatusCode::OK, format!("reloaded {n} rule groups\n")).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rule reload failed; keeping the rules in force");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to reload config: {e}\n"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_values_and_times_as_prometheus_prints_them() {
        assert_eq!(format_e(1.0), "1e+00");
        assert_eq!(format_e(0.25), "2.5e-01");
        assert_eq!(format_e(123456.0), "1.23456e+05");
        assert_eq!(rfc3339(Some(1_500)), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339(None), "0001-01-01T00:00:00Z");
    }
}
