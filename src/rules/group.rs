//! One rule group's evaluation, as Prometheus's `rules/group.go`,
//! `recording.go` and `alerting.go` do it: each rule's query at the
//! group's (offset) evaluation time, recording rules' results and the
//! `ALERTS` / `ALERTS_FOR_STATE` series appended through [`Db::append`],
//! staleness markers for series a rule no longer produces, the alert state
//! machine (`for`, `keep_firing_for`, resolved retention) and restoring
//! `for` state from `ALERTS_FOR_STATE` after a restart.
//!
//! Owns the per-rule state; never schedules (that is `manager.rs`) and
//! never talks to Alertmanager (`notifier.rs`): it hands back the alerts
//! to send.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use crate::model::{
    FloatHistogram, HistogramSample, HistogramValue, Labels, LabelsBuilder, Matcher, Sample,
    METRIC_NAME, STALE_NAN,
};
use crate::promql::{Engine, QueryOptions, Value};
use crate::rules::file::{GroupSpec, RuleKind, RuleSpec};
use crate::rules::template::{Template, TemplateData};
use crate::storage::{Db, SeriesSamples};

/// Name of the series alerting rules write per active alert.
pub const ALERTS_METRIC: &str = "ALERTS";
/// Name of the series holding each active alert's `activeAt` (seconds).
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";
/// How long a resolved alert is still sent to Alertmanager (Prometheus's
/// `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The alert timing flags, with Prometheus's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertTimings {
    /// How far back `for` state is restored from
    /// (`--rules.alert.for-outage-tolerance`, 1h).
    pub for_outage_tolerance_ms: i64,
    /// Least `for` left after a restore; alerts whose `for` is at most this
    /// start over (`--rules.alert.for-grace-period`, 10m).
    pub for_grace_period_ms: i64,
    /// How often a still-firing alert is sent again
    /// (`--rules.alert.resend-delay`, 1m).
    pub resend_delay_ms: i64,
}

impl Default for AlertTimings {
    fn default() -> Self {
        Self {
            for_outage_tolerance_ms: 60 * 60 * 1000,
            for_grace_period_ms: 10 * 60 * 1000,
            resend_delay_ms: 60 * 1000,
        }
    }
}

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Resolved (kept for [`RESOLVED_RETENTION_MS`] to tell Alertmanager).
    Inactive,
    /// Active for less than the rule's `for`.
    Pending,
    /// Active for at least `for`.
    Firing,
}

impl AlertState {
    /// Prometheus's name: `inactive`, `pending`, `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of an alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Labels: the series' (without `__name__`), the rule's, `alertname`.
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// State.
    pub state: AlertState,
    /// The value of the series at the last evaluation.
    pub value: f64,
    /// When the alert became active (ms).
    pub active_at: i64,
    /// When it started firing (ms), if it did.
    pub fired_at: Option<i64>,
    /// When it resolved (ms), if it did.
    pub resolved_at: Option<i64>,
    /// Since when it fires only because of `keep_firing_for` (ms).
    pub keep_firing_since: Option<i64>,
    /// When it was last sent to Alertmanager (ms).
    pub last_sent_at: Option<i64>,
}

impl Alert {
    /// Prometheus's `needsSending`: never while pending; at once when it
    /// resolved since the last send; otherwise every `resend_delay_ms`.
    pub fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        match (self.resolved_at, self.last_sent_at) {
            (_, None) => true,
            (Some(r), Some(sent)) if r > sent => true,
            (_, Some(sent)) => sent + resend_delay_ms < ts,
        }
    }
}

/// The outcome of a rule's last evaluation, for `/api/v1/rules`.
#[derive(Debug, Clone, Default)]
pub struct RuleHealth {
    /// `ok`, `err` or `unknown` (not evaluated yet).
    pub health: &'static str,
    /// The last error.
    pub last_error: Option<String>,
    /// Start of the last evaluation (ms since the epoch).
    pub last_evaluation_ms: Option<i64>,
    /// Its duration in seconds.
    pub evaluation_seconds: f64,
}

/// A rule with its state.
#[derive(Debug)]
pub struct RuleState {
    /// The rule as loaded.
    pub spec: RuleSpec,
    /// Last evaluation's health.
    pub health: RuleHealth,
    /// Alerting rules: active alerts by their labels.
    pub active: HashMap<Labels, Alert>,
    /// Series written by the last evaluation (for staleness markers).
    written: HashSet<Labels>,
}

/// What one group evaluation did.
#[derive(Debug, Default)]
pub struct EvalReport {
    /// Rules whose evaluation failed.
    pub failures: usize,
    /// Samples appended (results, ALERTS, staleness markers).
    pub samples: usize,
    /// Alerts to send to Alertmanager (firing and recently resolved).
    pub to_send: Vec<Alert>,
}

/// A group and its rules' state.
#[derive(Debug)]
pub struct Group {
    /// The group as loaded.
    pub spec: GroupSpec,
    /// Its rules, in file order.
    pub rules: Vec<RuleState>,
    /// External labels (`$externalLabels` in templates).
    pub external_labels: BTreeMap<String, String>,
    /// Restore and resend timings.
    pub timings: AlertTimings,
    /// Evaluations left before `for` state is restored: as Prometheus, a
    /// group loaded at start restores after its second evaluation (the
    /// first may not see recording rules' fresh output); until then
    /// alerts are pending at most and no `ALERTS` series are written.
    /// Zero for groups that need no restore.
    evals_before_restore: u8,
    /// Start of the last evaluation (ms) and its duration (s).
    pub last_evaluation_ms: Option<i64>,
    /// Duration of the last evaluation in seconds.
    pub last_duration_seconds: f64,
}

impl Group {
    /// A group ready for its first evaluation.
    pub fn new(
        spec: GroupSpec,
        external_labels: BTreeMap<String, String>,
        timings: AlertTimings,
    ) -> Self {
        let rules = spec
            .rules
            .iter()
            .map(|r| RuleState {
                spec: r.clone(),
                health: RuleHealth {
                    health: "unknown",
                    ..RuleHealth::default()
                },
                active: HashMap::new(),
                written: HashSet::new(),
            })
            .collect();
        Self {
            spec,
            rules,
            external_labels,
            timings,
            evals_before_restore: 2,
            last_evaluation_ms: None,
            last_duration_seconds: 0.0,
        }
    }

    /// Marks the group as needing no `for` restore: a group added by a
    /// reload after start (Prometheus restores only at start).
    pub fn skip_restore(&mut self) {
        self.evals_before_restore = 0;
    }

    /// Takes over the state of `old` for rules that are the same (same
    /// kind, name, query and labels), as Prometheus does on reload.
    pub fn inherit(&mut self, old: &mut Group) {
        self.evals_before_restore = old.evals_before_restore;
        for r in &mut self.rules {
            let same = old.rules.iter_mut().find(|o| {
                o.spec.name() == r.spec.name()
                    && o.spec.expr_text == r.spec.expr_text
                    && o.spec.labels == r.spec.labels
            });
            if let Some(o) = same {
                r.active = std::mem::take(&mut o.active);
                r.written = std::mem::take(&mut o.written);
                r.health = o.health.clone();
            }
        }
    }

    /// The evaluation time at or before `now_ms` on this group's slot:
    /// multiples of the interval shifted by a per-group offset from the
    /// hash of the group's name and file, as Prometheus's
    /// `Group.EvalTimestamp`, so groups spread over the interval.
    pub fn eval_timestamp(&self, now_ms: i64) -> i64 {
        let interval = self.spec.interval_ms.max(1);
        let offset = (self.slot_hash() % interval as u64) as i64;
        let adjusted = now_ms - offset;
        adjusted - adjusted.rem_euclid(interval) + offset
    }

    /// Prometheus's `Group.hash`: the hash of the labels
    /// `{name="<group>", file="<file>"}` (xxhash64 of the sorted pairs,
    /// each string followed by 0xff), in milliseconds' units.
    fn slot_hash(&self) -> u64 {
        let mut b = Vec::new();
        for (n, v) in [
            ("file", self.spec.file.to_string_lossy().as_ref()),
            ("name", self.spec.name.as_str()),
        ] {
            b.extend_from_slice(n.as_bytes());
            b.push(0xff);
            b.extend_from_slice(v.as_bytes());
            b.push(0xff);
        }
        // Prometheus hashes in nanoseconds; slots are the same in ms up
        // to the sub-millisecond part of the offset.
        xxhash_rust::xxh64::xxh64(&b, 0) / 1_000_000
    }

    /// Evaluates every rule at `eval_ms` (less the group's query offset)
    /// and appends the results. A failing rule is reported in its health
    /// and the report; the other rules still run.
    pub fn evaluate(&mut self, engine: &Engine, db: &Db, eval_ms: i64) -> EvalReport {
        let started = Instant::now();
        let ts = eval_ms - self.spec.query_offset_ms;
        let mut report = EvalReport::default();
        let external: BTreeMap<&str, &str> = self
            .external_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let group_labels = self.spec.labels.clone();
        let limit = self.spec.limit;
        let restored = self.evals_before_restore == 0;
        for rule in &mut self.rules {
            let rule_started = Instant::now();
            let out = eval_rule(
                rule,
                engine,
                db,
                ts,
                limit,
                restored,
                &group_labels,
                &external,
            );
            let (series, err) = match out {
                Ok(series) => (series, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            // Staleness: what the last evaluation wrote and this one did not.
            let now: HashSet<Labels> = series.iter().map(|(l, _)| l.clone()).collect();
            let mut batch: Vec<SeriesSamples> = series
                .into_iter()
                .map(|(labels, v)| match v {
                    OutValue::Float(v) => SeriesSamples {
                        created: Vec::new(),
                        labels,
                        samples: vec![Sample::new(ts, v)],
                        histograms: Vec::new(),
                    },
                    OutValue::Histogram(h) => SeriesSamples {
                        created: Vec::new(),
                        labels,
                        samples: Vec::new(),
                        histograms: vec![HistogramSample {
                            t: ts,
                            h: HistogramValue::Float(*h),
                        }],
                    },
                })
                .collect();
            if err.is_none() {
                for gone in rule.written.difference(&now) {
                    batch.push(SeriesSamples {
                        created: Vec::new(),
                        labels: gone.clone(),
                        samples: vec![Sample::new(ts, STALE_NAN)],
                        histograms: Vec::new(),
                    });
                }
                rule.written = now;
            }
            let mut err = err;
            if !batch.is_empty() {
                match db.append(&batch) {
                    Ok(o) => report.samples += o.appended,
                    Err(e) => {
                        err.get_or_insert(format!("appending results: {e}"));
                    }
                }
            }
            rule.health = RuleHealth {
                health: if err.is_some() { "err" } else { "ok" },
                last_error: err.clone(),
                last_evaluation_ms: Some(eval_ms),
                evaluation_seconds: rule_started.elapsed().as_secs_f64(),
            };
            if let Some(e) = err {
                report.failures += 1;
                tracing::warn!(group = %self.spec.name, rule = rule.spec.name(), error = %e, "rule evaluation failed");
            }
        }
        if self.evals_before_restore > 0 {
            self.evals_before_restore -= 1;
            if self.evals_before_restore == 0 {
                self.restore_for_state(db, ts);
            }
        }
        let resend_delay = self.timings.resend_delay_ms;
        for rule in &mut self.rules {
            for a in rule.active.values_mut() {
                if a.needs_sending(ts, resend_delay) {
                    a.last_sent_at = Some(ts);
                    report.to_send.push(a.clone());
                }
            }
        }
        self.last_evaluation_ms = Some(eval_ms);
        self.last_duration_seconds = started.elapsed().as_secs_f64();
        report
    }

    /// After a restart: pending alerts of rules with `for` get back the
    /// `activeAt` their `ALERTS_FOR_STATE` series recorded, adjusted for
    /// the downtime as Prometheus's `RestoreForState` does.
    fn restore_for_state(&mut self, db: &Db, ts: i64) {
        let AlertTimings {
            for_outage_tolerance_ms,
            for_grace_period_ms: grace,
            ..
        } = self.timings;
        let querier = db.querier(ts - for_outage_tolerance_ms, ts);
        for rule in &mut self.rules {
            let RuleKind::Alerting { for_ms, .. } = rule.spec.kind else {
                continue;
            };
            if for_ms <= 0 {
                continue;
            }
            for a in rule.active.values_mut() {
                let mut matchers = vec![Matcher::eq(METRIC_NAME, ALERTS_FOR_STATE_METRIC)];
                matchers.extend(a.labels.iter().map(|l| Matcher::eq(&*l.name, &*l.value)));
                let Some(series) = querier
                    .select(&matchers)
                    .into_iter()
                    .find(|s| s.labels().len() == a.labels.len() + 1)
                else {
                    continue;
                };
                let Some(last) = series.samples().filter(|s| !s.is_stale()).last() else {
                    continue;
                };
                let down_at = last.t;
                let mut active_at = (last.v as i64).saturating_mul(1000);
                let remaining = for_ms - (down_at - active_at);
                if for_ms <= grace {
                    active_at = ts;
                } else if remaining <= 0 {
                    // It was firing: keep its activeAt.
                } else if remaining <= grace {
                    active_at = ts - for_ms + grace;
                } else {
                    active_at += ts - down_at;
                }
                a.active_at = active_at;
            }
        }
    }
}

/// A rule's output value: a float, or a native histogram (a recording
/// rule over histograms records histograms, as Prometheus does).
#[derive(Debug, Clone)]
enum OutValue {
    Float(f64),
    Histogram(Box<FloatHistogram>),
}

type Output = Vec<(Labels, OutValue)>;

#[allow(clippy::too_many_arguments)]
fn eval_rule(
    rule: &mut RuleState,
    engine: &Engine,
    db: &Db,
    ts: i64,
    limit: usize,
    restored: bool,
    group_labels: &BTreeMap<String, String>,
    external: &BTreeMap<&str, &str>,
) -> Result<Output, String> {
    let result = engine
        .instant(db, &rule.spec.expr, ts, &QueryOptions::default())
        .map_err(|e| e.to_string())?;
    let vector: Vec<(Labels, OutValue)> = match result.value {
        Value::Vector(v) => v
            .into_iter()
            .map(|s| {
                let value = match s.h {
                    Some(h) => OutValue::Histogram(h),
                    None => OutValue::Float(s.v),
                };
                (s.labels, value)
            })
            .collect(),
        Value::Scalar { v, .. } => vec![(Labels::empty(), OutValue::Float(v))],
        other => {
            return Err(format!(
                "rule result is not a vector or scalar: {}",
                other.type_name()
            ))
        }
    };
    if limit > 0 && vector.len() > limit {
        if let RuleKind::Alerting { .. } = rule.spec.kind {
            rule.active.clear();
        }
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            vector.len()
        ));
    }
    match &rule.spec.kind {
        RuleKind::Recording { record } => {
            let mut out = Vec::with_capacity(vector.len());
            let mut seen = HashSet::new();
            for (labels, v) in vector {
                let labels = relabel(&labels, record, group_labels, &rule.spec.labels, &[])?;
                if !seen.insert(labels.clone()) {
                    return Err(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    );
                }
                out.push((labels, v));
            }
            Ok(out)
        }
        RuleKind::Alerting {
            alert,
            for_ms,
            keep_firing_for_ms,
            annotations,
        } => eval_alerting(
            &mut rule.active,
            &rule.spec.labels,
            AlertingParams {
                alert,
                restored,
                for_ms: *for_ms,
                keep_firing_for_ms: *keep_firing_for_ms,
                annotations,
            },
            vector,
            ts,
            group_labels,
            external,
        ),
    }
}

struct AlertingParams<'a> {
    alert: &'a str,
    /// Whether `for` state was restored: until then nothing fires and no
    /// `ALERTS` series are written (Prometheus's `restored`).
    restored: bool,
    for_ms: i64,
    keep_firing_for_ms: i64,
    annotations: &'a BTreeMap<String, String>,
}

fn eval_alerting(
    active: &mut HashMap<Labels, Alert>,
    rule_labels: &BTreeMap<String, String>,
    p: AlertingParams<'_>,
    vector: Vec<(Labels, OutValue)>,
    ts: i64,
    group_labels: &BTreeMap<String, String>,
    external: &BTreeMap<&str, &str>,
) -> Result<Output, String> {
    let mut current: HashMap<Labels, (f64, BTreeMap<String, String>)> = HashMap::new();
    for (series, value) in vector {
        // A histogram's $value is 0, as Prometheus's Sample.F of one.
        let v = match value {
            OutValue::Float(v) => v,
            OutValue::Histogram(_) => 0.0,
        };
        let data = TemplateData {
            labels: series
                .iter()
                .filter(|l| &*l.name != METRIC_NAME)
                .map(|l| (&*l.name, &*l.value))
                .collect(),
            external_labels: external.clone(),
            value: v,
        };
        let expand = |text: &str| -> String {
            Template::parse(text)
                .and_then(|t| t.expand(&data))
                .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
        };
        let expanded: Vec<(String, String)> = rule_labels
            .iter()
            .map(|(k, t)| (k.clone(), expand(t)))
            .collect();
        let labels = relabel(&series, "", group_labels, &BTreeMap::new(), &expanded)?;
        let mut b = LabelsBuilder::new();
        for l in labels.iter() {
            b.push_shared(l.name.clone(), l.value.clone());
        }
        b.push("alertname", p.alert);
        let labels = b.build().map_err(|e| e.to_string())?;
        let annotations = p
            .annotations
            .iter()
            .map(|(k, t)| (k.clone(), expand(t)))
            .collect();
        if current.insert(labels, (v, annotations)).is_some() {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
    }
    for (labels, (value, annotations)) in &current {
        match active.get_mut(labels) {
            Some(a) if a.state != AlertState::Inactive => {
                a.value = *value;
                a.annotations = annotations.clone();
            }
            _ => {
                active.insert(
                    labels.clone(),
                    Alert {
                        labels: labels.clone(),
                        annotations: annotations.clone(),
                        state: AlertState::Pending,
                        value: *value,
                        active_at: ts,
                        fired_at: None,
                        resolved_at: None,
                        keep_firing_since: None,
                        last_sent_at: None,
                    },
                );
            }
        }
    }
    let mut out = Vec::new();
    active.retain(|labels, a| {
        if !current.contains_key(labels) {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && p.keep_firing_for_ms > 0 {
                let since = *a.keep_firing_since.get_or_insert(ts);
                keep_firing = ts - since < p.keep_firing_for_ms;
            }
            if a.state == AlertState::Pending
                || a.resolved_at
                    .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
            {
                return false;
            }
            if a.state != AlertState::Inactive && !keep_firing {
                a.state = AlertState::Inactive;
                a.resolved_at = Some(ts);
            }
            if !keep_firing {
                return true;
            }
        } else {
            a.keep_firing_since = None;
        }
        if p.restored && a.state == AlertState::Pending && ts - a.active_at >= p.for_ms {
            a.state = AlertState::Firing;
            a.fired_at = Some(ts);
        }
        true
    });
    for a in active.values() {
        if a.state == AlertState::Inactive || !p.restored {
            continue;
        }
        let mut b = LabelsBuilder::new();
        for l in a.labels.iter() {
            b.push_shared(l.name.clone(), l.value.clone());
        }
        b.push(METRIC_NAME, ALERTS_METRIC)
            .push("alertstate", a.state.as_str());
        out.push((b.build().map_err(|e| e.to_string())?, OutValue::Float(1.0)));
        let mut b = LabelsBuilder::new();
        for l in a.labels.iter() {
            b.push_shared(l.name.clone(), l.value.clone());
        }
        b.push(METRIC_NAME, ALERTS_FOR_STATE_METRIC);
        out.push((
            b.build().map_err(|e| e.to_string())?,
            OutValue::Float((a.active_at / 1000) as f64),
        ));
    }
    Ok(out)
}

/// The output labels of a series: its labels with `__name__` set to
/// `name` (or removed when empty), then the group's labels, the rule's
/// labels and `extra`, later ones overriding; an empty value removes.
fn relabel(
    series: &Labels,
    name: &str,
    group: &BTreeMap<String, String>,
    rule: &BTreeMap<String, String>,
    extra: &[(String, String)],
) -> Result<Labels, String> {
    let mut m: BTreeMap<&str, &str> = series
        .iter()
        .filter(|l| &*l.name != METRIC_NAME)
        .map(|l| (&*l.name, &*l.value))
        .collect();
    for (k, v) in group
        .iter()
        .chain(rule.iter())
        .chain(extra.iter().map(|(k, v)| (k, v)))
    {
        m.insert(k, v);
    }
    if !name.is_empty() {
        m.insert(METRIC_NAME, name);
    }
    let mut b = LabelsBuilder::new();
    for (k, v) in m {
        if !v.is_empty() {
            b.push(k, v);
        }
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::rules::file::parse_groups;
    use crate::storage::wal::{FsyncPolicy, WalOptions};
    use crate::storage::Options;

    fn open(dir: &Path) -> Db {
        Db::open(
            dir,
            Options {
                wal: WalOptions {
                    fsync: FsyncPolicy::Never,
                    ..Default::default()
                },
                stripes: 16,
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn write(db: &Db, labels: &[(&str, &str)], t: i64, v: f64) {
        let b = [SeriesSamples {
            created: Vec::new(),
            labels: Labels::from_static(labels),
            samples: vec![Sample::new(t, v)],
            histograms: Vec::new(),
        }];
        assert!(db.append(&b).unwrap().is_complete());
    }

    fn group(text: &str) -> Group {
        let mut g = parse_groups(Path::new("rules.yml"), text, 10_000).unwrap();
        Group::new(
            g.remove(0),
            BTreeMap::from([("cluster".into(), "eu".into())]),
            AlertTimings::default(),
        )
    }

    fn query(db: &Db, q: &str, t: i64) -> Vec<(String, f64)> {
        match Engine::default().instant_query(db, q, t).unwrap().value {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect(),
            other => panic!("{other:?}"),
        }
    }

    const RULES: &str = "groups:
  - name: g
    interval: 10s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels: {source: rule}
      - alert: Down
        expr: up == 0
        for: 20s
        keep_firing_for: 10s
        labels: {severity: page, summary_of: '{{ $labels.instance }}'}
        annotations:
          summary: '{{ $labels.instance }} of {{ $externalLabels.cluster }} is down ({{ $value }})'
";

    #[test]
    fn recording_rule_writes_results_and_stale_markers() {
        let tmp = tempfile::tempdir().unwrap();
        let db = open(tmp.path());
        let engine = Engine::default();
        let mut g = group(RULES);
        write(
            &db,
            &[("__name__", "up"), ("job", "a"), ("instance", "1")],
            0,
            1.0,
        );
        write(
            &db,
            &[("__name__", "up"), ("job", "a"), ("instance", "2")],
            0,
            1.0,
        );
        let r = g.evaluate(&engine, &db, 10_000);
        assert_eq!(r.failures, 0);
        assert_eq!(
            query(&db, "job:up:sum", 10_000),
            [("job:up:sum{job=\"a\", source=\"rule\"}".to_string(), 2.0)]
        );
        // Past the lookback the input is gone: the rule's series gets a
        // staleness marker and vanishes at once, not 5 minutes later.
        g.evaluate(&engine, &db, 400_000);
        assert!(query(&db, "job:up:sum", 400_000).is_empty());
        assert_eq!(g.rules[0].health.health, "ok");
    }

    #[test]
    fn alert_goes_pending_then_firing_keeps_firing_then_resolves() {
        let tmp = tempfile::tempdir().unwrap();
        let db = open(tmp.path());
        let engine = Engine::default();
        let mut g = group(RULES);
        let up = [("__name__", "up"), ("job", "a"), ("instance", "1")];
        let state = |g: &Group| -> Vec<AlertState> {
            g.rules[1].active.values().map(|a| a.state).collect()
        };
        // A first evaluation before any data (restore waits for two).
        g.evaluate(&engine, &db, 5_000);
        write(&db, &up, 0, 0.0);
        let r = g.evaluate(&engine, &db, 10_000);
        assert_eq!(state(&g), [AlertState::Pending]);
        assert!(r.to_send.is_empty(), "pending alerts are not sent");
        let a = g.rules[1].active.values().next().unwrap().clone();
        assert_eq!(a.active_at, 10_000);
        assert_eq!(a.labels.get("alertname"), Some("Down"));
        assert_eq!(a.labels.get("summary_of"), Some("1"));
        assert_eq!(a.annotations["summary"], "1 of eu is down (0)");
        assert!(
            query(&db, "ALERTS", 10_000).is_empty(),
            "no ALERTS before the for state is restored"
        );

        write(&db, &up, 20_000, 0.0);
        g.evaluate(&engine, &db, 20_000);
        assert_eq!(state(&g), [AlertState::Pending], "for is 20s");
        assert_eq!(
            query(&db, "ALERTS", 20_000)[0].0,
            "ALERTS{alertname=\"Down\", alertstate=\"pending\", instance=\"1\", job=\"a\", severity=\"page\", summary_of=\"1\"}"
        );
        assert_eq!(query(&db, "ALERTS_FOR_STATE", 20_000)[0].1, 10.0);
        write(&db, &up, 30_000, 0.0);
        let r = g.evaluate(&engine, &db, 30_000);
        assert_eq!(state(&g), [AlertState::Firing]);
        assert_eq!(r.to_send.len(), 1);
        // Resent only after the resend delay.
        write(&db, &up, 40_000, 0.0);
        assert!(g.evaluate(&engine, &db, 40_000).to_send.is_empty());

        // The condition clears: keep_firing_for holds it 10 s more.
        write(&db, &up, 50_000, 1.0);
        g.evaluate(&engine, &db, 50_000);
        assert_eq!(state(&g), [AlertState::Firing]);
        assert!(g.rules[1]
            .active
            .values()
            .next()
            .unwrap()
            .keep_firing_since
            .is_some());
        write(&db, &up, 60_000, 1.0);
        let r = g.evaluate(&engine, &db, 60_000);
        assert_eq!(state(&g), [AlertState::Inactive]);
        assert_eq!(r.to_send.len(), 1, "a resolved alert is sent at once");
        assert_eq!(r.to_send[0].resolved_at, Some(60_000));
        assert!(query(&db, "ALERTS", 60_000).is_empty(), "ALERTS went stale");
        // Kept for the resolved retention, then forgotten.
        g.evaluate(&engine, &db, 60_000 + RESOLVED_RETENTION_MS + 10_000);
        assert!(state(&g).is_empty());
    }

    #[test]
    fn for_state_is_restored_after_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let long_for = RULES.replace("for: 20s", "for: 30m");
        {
            let db = open(tmp.path());
            let engine = Engine::default();
            let mut g = group(&long_for);
            let up = [("__name__", "up"), ("job", "a"), ("instance", "1")];
            for t in (0..=600_000).step_by(10_000) {
                write(&db, &up, t, 0.0);
                g.evaluate(&engine, &db, t.max(10_000));
            }
            db.close().unwrap();
        }
        let db = open(tmp.path());
        let engine = Engine::default();
        let mut g = group(&long_for);
        let up = [("__name__", "up"), ("job", "a"), ("instance", "1")];
        // Down for 2 minutes, restarted: 20 of the 30 minutes remain, so
        // activeAt moves by the downtime instead of starting over. The
        // restore follows the second evaluation, as in Prometheus.
        write(&db, &up, 720_000, 0.0);
        g.evaluate(&engine, &db, 720_000);
        assert_eq!(
            g.rules[1].active.values().next().unwrap().active_at,
            720_000
        );
        g.evaluate(&engine, &db, 730_000);
        let a = g.rules[1].active.values().next().unwrap();
        assert_eq!(a.active_at, 10_000 + (730_000 - 600_000));
    }

    #[test]
    fn failing_rule_is_counted_and_the_others_still_run() {
        let tmp = tempfile::tempdir().unwrap();
        let db = open(tmp.path());
        let mut g = group(
            "groups:
  - name: g
    rules:
      - record: bad
        expr: 'label_replace(up, \"a\", \"x\", \"job\", \"(\")'
      - record: good
        expr: vector(1)
",
        );
        let r = g.evaluate(&Engine::default(), &db, 10_000);
        assert_eq!(r.failures, 1);
        assert_eq!(g.rules[0].health.health, "err");
        assert!(g.rules[0].health.last_error.is_some());
        assert_eq!(query(&db, "good", 10_000).len(), 1);
    }

    #[test]
    fn limit_refuses_oversized_results() {
        let tmp = tempfile::tempdir().unwrap();
        let db = open(tmp.path());
        write(&db, &[("__name__", "up"), ("instance", "1")], 0, 1.0);
        write(&db, &[("__name__", "up"), ("instance", "2")], 0, 1.0);
        let mut g = group(
            "groups:\n  - name: g\n    limit: 1\n    rules:\n      - record: r\n        expr: up\n",
        );
        let r = g.evaluate(&Engine::default(), &db, 10_000);
        assert_eq!(r.failures, 1);
        assert!(g.rules[0]
            .health
            .last_error
            .as_deref()
            .unwrap()
            .contains("limit of 1"));
        assert!(query(&db, "r", 10_000).is_empty());
    }

    #[test]
    fn evaluation_slots_are_aligned_per_group() {
        let g = group(RULES);
        let t = g.eval_timestamp(1_700_000_123_456);
        assert!(t <= 1_700_000_123_456 && 1_700_000_123_456 - t < 10_000);
        // Every slot of a group is the same offset into the interval.
        assert_eq!(g.eval_timestamp(t + 10_000), t + 10_000);
        assert_eq!(g.eval_timestamp(t + 19_999), t + 10_000);
        assert_eq!((t - g.eval_timestamp(5 * 86_400_000)).rem_euclid(10_000), 0);
    }

    #[test]
    fn recording_rule_over_histograms_records_histograms() {
        use crate::model::{CounterResetHint, Span};
        let tmp = tempfile::tempdir().unwrap();
        let db = open(tmp.path());
        let h = |count: f64| FloatHistogram {
            counter_reset_hint: CounterResetHint::Gauge,
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 0.0,
            count,
            sum: count * 2.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            negative_spans: Vec::new(),
            positive_buckets: vec![count / 2.0, count / 2.0],
            negative_buckets: Vec::new(),
            custom_values: Vec::new(),
        };
        for (inst, c) in [("1", 4.0), ("2", 6.0)] {
            let b = [SeriesSamples {
                created: Vec::new(),
                labels: Labels::from_static(&[("__name__", "lat"), ("instance", inst)]),
                samples: Vec::new(),
                histograms: vec![HistogramSample {
                    t: 0,
                    h: HistogramValue::Float(h(c)),
                }],
            }];
            assert!(db.append(&b).unwrap().is_complete());
        }
        let mut g = group(
            "groups:\n  - name: g\n    rules:\n      - record: lat:sum\n        expr: sum(lat)\n",
        );
        assert_eq!(g.evaluate(&Engine::default(), &db, 10_000).failures, 0);
        let got = Engine::default()
            .instant_query(&db, "histogram_count(lat:sum)", 10_000)
            .unwrap()
            .value;
        match got {
            Value::Vector(v) => assert_eq!(v[0].v, 10.0),
            other => panic!("{other:?}"),
        }
    }
}
