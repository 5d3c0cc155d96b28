//! The rule manager: loads `--rule-files` (globs), runs one task per
//! group on its aligned slot, counts missed iterations, reloads (state of
//! unchanged rules carried over), hands alerts to the notifier and keeps
//! what `/api/v1/rules` and `/api/v1/alerts` show.
//!
//! Owns scheduling and the set of groups; evaluation semantics live in
//! `group.rs`, the file format in `file.rs`, delivery in `notifier.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::promql::Engine;
use crate::rules::file::{load_file, GroupSpec, RuleFileError, RuleFileReason};
use crate::rules::group::{AlertTimings, Group};
use crate::rules::notifier::Notifier;
use crate::storage::Db;

/// Settings of the rule manager.
#[derive(Debug, Clone, Default)]
pub struct RulesOptions {
    /// Rule file paths or globs (`--rule-files`).
    pub files: Vec<String>,
    /// Interval of groups that name none (`--rules.evaluation-interval`, ms).
    pub default_interval_ms: i64,
    /// `$externalLabels` and labels added to alerts sent.
    pub external_labels: BTreeMap<String, String>,
    /// Restore and resend timings (`--rules.alert.*`).
    pub timings: AlertTimings,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    rule_group: String,
}

/// Mirrors of Prometheus's `prometheus_rule_*` metrics.
#[derive(Debug, Default)]
pub struct RuleMetrics {
    evaluations: Family<GroupLabel, Counter>,
    failures: Family<GroupLabel, Counter>,
    iterations: Family<GroupLabel, Counter>,
    missed: Family<GroupLabel, Counter>,
    last_evaluation: Family<GroupLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    last_duration: Family<GroupLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    interval: Family<GroupLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    rules: Family<GroupLabel, Gauge>,
}

impl RuleMetrics {
    /// Registers the metrics under Prometheus's names.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Arc::new(Self::default());
        let r = registry.sub_registry_with_prefix("prometheus_rule");
        r.register(
            "evaluations",
            "The total number of rule evaluations.",
            m.evaluations.clone(),
        );
        r.register(
            "evaluation_failures",
            "The total number of rule evaluation failures.",
            m.failures.clone(),
        );
        r.register(
            "group_iterations",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            m.iterations.clone(),
        );
        r.register(
            "group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            m.missed.clone(),
        );
        r.register(
            "group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            m.last_evaluation.clone(),
        );
        r.register(
            "group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            m.last_duration.clone(),
        );
        r.register(
            "group_interval_seconds",
            "The interval of a rule group.",
            m.interval.clone(),
        );
        r.register("group_rules", "The number of rules.", m.rules.clone());
        m
    }
}

/// A group, its task and its identity.
struct Running {
    key: (PathBuf, String),
    group: Arc<Mutex<Group>>,
    task: tokio::task::JoinHandle<()>,
}

/// Loads and runs rule groups.
pub struct RuleManager {
    db: Arc<Db>,
    engine: Engine,
    opts: RulesOptions,
    notifier: Option<Arc<Notifier>>,
    metrics: Arc<RuleMetrics>,
    running: tokio::sync::Mutex<Vec<Running>>,
    /// Snapshot of the groups for the API (replaced on reload).
    groups: Mutex<Vec<Arc<Mutex<Group>>>>,
    /// Whether the first load happened (later new groups need no restore).
    loaded: std::sync::atomic::AtomicBool,
    /// The rule files as of the last load attempt (path, mtime, size).
    seen: Mutex<Vec<(PathBuf, Option<SystemTime>, u64)>>,
}

impl std::fmt::Debug for RuleManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleManager")
            .field("opts", &self.opts)
            .finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The rule files the globs match, with their modification time and size:
/// what [`RuleManager::files_changed`] compares.
fn fingerprint(opts: &RulesOptions) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out: Vec<_> = opts
        .files
        .iter()
        .filter_map(|p| glob::glob(p).ok())
        .flat_map(|paths| paths.flatten())
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (p, modified, len)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Expands the globs and loads every file, in path order.
///
/// # Errors
/// The first file that fails, or a glob that is not a valid pattern.
pub fn load_groups(opts: &RulesOptions) -> Result<Vec<GroupSpec>, RuleFileError> {
    let mut paths = Vec::new();
    for pattern in &opts.files {
        let entries = glob::glob(pattern).map_err(|e| RuleFileError {
            file: PathBuf::from(pattern),
            location: String::new(),
            reason: RuleFileReason::Read(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                e.to_string(),
            )),
        })?;
        for p in entries.flatten() {
            paths.push(p);
        }
    }
    paths.sort();
    paths.dedup();
    let mut out = Vec::new();
    for p in paths {
        out.extend(load_file(&p, opts.default_interval_ms)?);
    }
    Ok(out)
}

impl RuleManager {
    /// A manager over `db`, not yet running.
    pub fn new(
        db: Arc<Db>,
        engine: Engine,
        opts: RulesOptions,
        notifier: Option<Arc<Notifier>>,
        metrics: Arc<RuleMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            engine,
            opts,
            notifier,
            metrics,
            running: tokio::sync::Mutex::new(Vec::new()),
            groups: Mutex::new(Vec::new()),
            loaded: std::sync::atomic::AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The groups, for the API.
    pub fn groups(&self) -> Vec<Arc<Mutex<Group>>> {
        self.groups.lock().clone()
    }

    /// Loads the rule files and (re)starts every group. Rules unchanged
    /// since the last load keep their state (active alerts, staleness).
    /// On an error nothing changes.
    ///
    /// # Errors
    /// The file, group and rule that failed.
    pub async fn reload(self: &Arc<Self>) -> Result<usize, RuleFileError> {
        // A failed attempt counts as seen: broken files are not retried
        // until they change again.
        *self.seen.lock() = fingerprint(&self.opts);
        let opts = self.opts.clone();
        // Parsing runs the query parser: on a thread with its stack.
        let specs = crate::promql::run_on_query_thread(move || load_groups(&opts))
            .await
            .map_err(|e| RuleFileError {
                file: PathBuf::new(),
                location: String::new(),
                reason: RuleFileReason::Read(std::io::Error::other(e.to_string())),
            })??;
        let mut running = self.running.lock().await;
        let mut old: Vec<Running> = std::mem::take(&mut *running);
        for r in &old {
            r.task.abort();
        }
        let mut groups = Vec::with_capacity(specs.len());
        for spec in specs {
            let key = (spec.file.clone(), spec.name.clone());
            let mut group = Group::new(spec, self.opts.external_labels.clone(), self.opts.timings);
            if let Some(prev) = old.iter_mut().find(|r| r.key == key) {
                group.inherit(&mut prev.group.lock());
            } else if self.loaded.load(std::sync::atomic::Ordering::Acquire) {
                group.skip_restore();
            }
            let label = GroupLabel {
                rule_group: format!("{};{}", key.0.display(), key.1),
            };
            self.metrics
                .interval
                .get_or_create(&label)
                .set(group.spec.interval_ms as f64 / 1000.0);
            self.metrics
                .rules
                .get_or_create(&label)
                .set(group.rules.len() as i64);
            // The counters exist from the start, at zero.
            for family in [
                &self.metrics.evaluations,
                &self.metrics.failures,
                &self.metrics.iterations,
                &self.metrics.missed,
            ] {
                let _ = family.get_or_create(&label);
            }
            let group = Arc::new(Mutex::new(group));
            let task = tokio::spawn(run_group(self.clone(), group.clone(), label));
            groups.push(group.clone());
            running.push(Running { key, group, task });
        }
        let n = groups.len();
        *self.groups.lock() = groups;
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(n)
    }

    /// Whether a rule file was added, removed or changed since the last
    /// load attempt (a mounted ConfigMap updated in place). A failed
    /// attempt counts: the same broken files are not retried until they
    /// change again.
    pub fn files_changed(&self) -> bool {
        let now = fingerprint(&self.opts);
        let mut seen = self.seen.lock();
        if *seen == now {
            return false;
        }
        *seen = now;
        true
    }

    /// Stops every group.
    pub async fn stop(&self) {
        for r in self.running.lock().await.drain(..) {
            r.task.abort();
        }
    }
}

/// One group's loop: wait for the next slot, evaluate, count.
async fn run_group(mgr: Arc<RuleManager>, group: Arc<Mutex<Group>>, label: GroupLabel) {
    let (interval, mut next) = {
        let g = group.lock();
        let interval = g.spec.interval_ms.max(1);
        (interval, g.eval_timestamp(now_ms()) + interval)
    };
    loop {
        let wait = next - now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        let (g, db, engine) = (group.clone(), mgr.db.clone(), mgr.engine.clone());
        let at = next;
        let report =
            crate::promql::run_on_query_thread(move || g.lock().evaluate(&engine, &db, at)).await;
        let m = &mgr.metrics;
        m.iterations.get_or_create(&label).inc();
        match report {
            Ok(report) => {
                let (n, secs) = {
                    let g = group.lock();
                    (g.rules.len(), g.last_duration_seconds)
                };
                m.evaluations.get_or_create(&label).inc_by(n as u64);
                m.failures
                    .get_or_create(&label)
                    .inc_by(report.failures as u64);
                m.last_evaluation
                    .get_or_create(&label)
                    .set(at as f64 / 1000.0);
                m.last_duration.get_or_create(&label).set(secs);
                if let Some(n) = &mgr.notifier {
                    if !report.to_send.is_empty() {
                        n.send(
                            &report.to_send,
                            at,
                            interval,
                            mgr.opts.timings.resend_delay_ms,
                        );
                    }
                }
            }
            Err(e) => {
                m.failures.get_or_create(&label).inc();
                tracing::error!(error = %e, "rule group evaluation panicked");
            }
        }
        next += interval;
        let behind = now_ms() - next;
        if behind >= interval {
            let missed = behind / interval;
            m.missed.get_or_create(&label).inc_by(missed as u64);
            m.iterations.get_or_create(&label).inc_by(missed as u64);
            next += missed * interval;
            tracing::warn!(group = %label.rule_group, missed, "rule group evaluation missed iterations");
        }
    }
}
