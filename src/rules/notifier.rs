//! Sends alerts to Alertmanager (`--alertmanager.url`, API v2
//! `POST /api/v2/alerts`) as Prometheus's notifier does: a bounded queue
//! (the oldest alerts dropped and counted when it is full), batches of at
//! most [`MAX_BATCH`], every batch to every Alertmanager, external labels
//! added, `endsAt` of a firing alert four resend intervals ahead so
//! Alertmanager resolves it by itself if Tidemark goes away. A failed send
//! is counted and not retried: the alert goes again on its next resend.
//!
//! Owns delivery only; which alerts to send and when is `group.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::model::calendar::rfc3339_utc_ms as rfc3339_ms;
use crate::rules::group::{Alert, AlertState};

/// Most alerts in one request (Prometheus's `maxBatchSize`).
pub const MAX_BATCH: usize = 256;
/// Time-out of one request to an Alertmanager.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Notifier settings.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// Alertmanager base URLs (`http://host:9093`).
    pub alertmanagers: Vec<String>,
    /// Most alerts queued (`--alertmanager.notification-queue-capacity`).
    pub queue_capacity: usize,
    /// Labels added to every alert (not overriding its own).
    pub external_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AmLabel {
    alertmanager: String,
}

#[derive(Debug, Default)]
struct Metrics {
    sent: Family<AmLabel, Counter>,
    errors: Family<AmLabel, Counter>,
    dropped: Counter,
    queue_length: Gauge,
    queue_capacity: Gauge,
    alertmanagers: Gauge,
}

/// One alert as Alertmanager's API v2 takes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    /// Labels (identity).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339.
    pub ends_at: String,
}

/// The Alertmanager client and its queue.
pub struct Notifier {
    opts: NotifierOptions,
    queue: Mutex<VecDeque<PostableAlert>>,
    wake: tokio::sync::Notify,
    metrics: Metrics,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("opts", &self.opts)
            .finish()
    }
}

impl Notifier {
    /// A notifier with its metrics registered under Prometheus's names; call
    /// [`Notifier::run`] on a task to deliver.
    pub fn new(opts: NotifierOptions, registry: &mut Registry) -> Arc<Self> {
        let metrics = Metrics::default();
        let r = registry.sub_registry_with_prefix("prometheus_notifications");
        r.register("sent", "Total number of alerts sent.", metrics.sent.clone());
        r.register(
            "errors",
            "Total number of sent alerts affected by errors.",
            metrics.errors.clone(),
        );
        r.register(
            "dropped",
            "Total number of alerts dropped due to errors when sending to Alertmanager.",
            metrics.dropped.clone(),
        );
        r.register(
            "queue_length",
            "The number of alert notifications in the queue.",
            metrics.queue_length.clone(),
        );
        r.register(
            "queue_capacity",
            "The capacity of the alert notifications queue.",
            metrics.queue_capacity.clone(),
        );
        r.register(
            "alertmanagers_discovered",
            "The number of alertmanagers discovered and active.",
            metrics.alertmanagers.clone(),
        );
        // Every Alertmanager's series exist from the start, at zero.
        for am in &opts.alertmanagers {
            let label = AmLabel {
                alertmanager: am.clone(),
            };
            let _ = metrics.sent.get_or_create(&label);
            let _ = metrics.errors.get_or_create(&label);
        }
        metrics.queue_capacity.set(opts.queue_capacity as i64);
        metrics.alertmanagers.set(opts.alertmanagers.len() as i64);
        let client = Client::builder(TokioExecutor::new()).build_http();
        Arc::new(Self {
            opts,
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            metrics,
            client,
        })
    }

    /// Queues `alerts` evaluated at `ts` by a group of `interval_ms`; a
    /// firing alert is valid for four times the longer of that and
    /// `resend_delay_ms` (Prometheus's `ValidUntil`).
    pub fn send(&self, alerts: &[Alert], ts: i64, interval_ms: i64, resend_delay_ms: i64) {
        let valid_for = 4 * resend_delay_ms.max(interval_ms);
        let mut q = self.queue.lock();
        for a in alerts {
            let mut labels: BTreeMap<String, String> = a
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            for (k, v) in &self.opts.external_labels {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let ends = match (a.state, a.resolved_at) {
                (AlertState::Inactive, Some(r)) => r,
                _ => ts.saturating_add(valid_for),
            };
            q.push_back(PostableAlert {
                labels,
                annotations: a.annotations.clone(),
                starts_at: rfc3339_ms(a.active_at),
                ends_at: rfc3339_ms(ends),
            });
        }
        let cap = self.opts.queue_capacity.max(1);
        while q.len() > cap {
            q.pop_front();
            self.metrics.dropped.inc();
        }
        self.metrics.queue_length.set(q.len() as i64);
        drop(q);
        self.wake.notify_one();
    }

    /// Delivers queued alerts until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            let batch: Vec<PostableAlert> = {
                let mut q = self.queue.lock();
                let n = q.len().min(MAX_BATCH);
                let b = q.drain(..n).collect();
                self.metrics.queue_length.set(q.len() as i64);
                b
            };
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let body = match serde_json::to_vec(&batch) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::error!(error = %e, "encoding alerts");
                    continue;
                }
            };
            for am in &self.opts.alertmanagers {
                let label = AmLabel {
                    alertmanager: am.clone(),
                };
                match self.post(am, body.clone()).await {
                    Ok(()) => {
                        self.metrics
                            .sent
                            .get_or_create(&label)
                            .inc_by(batch.len() as u64);
                    }
                    Err(e) => {
                        self.metrics
                            .errors
                            .get_or_create(&label)
                            .inc_by(batch.len() as u64);
                        tracing::warn!(alertmanager = %am, error = %e, "sending alerts failed");
                    }
                }
            }
        }
    }

    async fn post(&self, base: &str, body: Bytes) -> Result<(), String> {
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        let req = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("Tidemark/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(SEND_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {SEND_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("{url}: HTTP {}", resp.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn alert(state: AlertState, resolved_at: Option<i64>) -> Alert {
        Alert {
            labels: Labels::from_static(&[("alertname", "A"), ("job", "x")]),
            annotations: BTreeMap::from([("summary".into(), "s".into())]),
            state,
            value: 1.0,
            active_at: 1_000,
            fired_at: Some(1_000),
            resolved_at,
            keep_firing_since: None,
            last_sent_at: None,
        }
    }

    #[test]
    fn queue_is_bounded_and_alerts_get_external_labels_and_ends_at() {
        let mut reg = Registry::default();
        let n = Notifier::new(
            NotifierOptions {
                alertmanagers: vec![],
                queue_capacity: 2,
                external_labels: BTreeMap::from([
                    ("cluster".into(), "eu".into()),
                    ("job".into(), "ignored".into()),
                ]),
            },
            &mut reg,
        );
        n.send(&[alert(AlertState::Firing, None)], 10_000, 15_000, 60_000);
        n.send(
            &[alert(AlertState::Inactive, Some(20_000))],
            20_000,
            15_000,
            60_000,
        );
        n.send(&[alert(AlertState::Firing, None)], 30_000, 15_000, 60_000);
        let q = n.queue.lock();
        assert_eq!(q.len(), 2);
        assert_eq!(n.metrics.dropped.get(), 1);
        assert_eq!(q[0].ends_at, rfc3339_ms(20_000));
        assert_eq!(q[1].ends_at, rfc3339_ms(30_000 + 240_000));
        assert_eq!(q[1].labels["cluster"], "eu");
        assert_eq!(q[1].labels["job"], "x");
        assert_eq!(q[1].starts_at, "1970-01-01T00:00:01Z");
    }
}
