//! [`Fanout`]: the query role's [`Source`]. Each read goes to every
//! endpoint that may hold matching data, at once, with the selector's
//! matchers and time range pushed down (remote read, streamed XOR chunks;
//! `/api/v1/series` and the label calls for metadata); each endpoint's
//! `--external-label`s are attached to its series (the series' own labels
//! win, as Prometheus's remote read merges them), and the answers are
//! merged and de-duplicated ([`super::dedup`]).
//!
//! Endpoints are skipped when their time range (from
//! `/api/v1/status/range`, refreshed with the DNS names every
//! `--endpoint.refresh-interval`) cannot overlap the read, or when a
//! matcher on one of their external labels cannot match its value.
//!
//! An endpoint that fails (unreachable, time-out, error status, bad
//! answer) fails the read with a message naming it, unless partial
//! responses are allowed (`--query.partial-response` or the request's
//! `partial_response`): then the answer carries a warning naming it. A
//! replica whose HA group (its external labels without the replica
//! labels) has another member that answered loses nothing: the answer
//! stands, with a warning naming the missing replica.
//!
//! Runs reads by blocking the calling query thread on the runtime handle;
//! must never be called from a runtime thread.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;

use crate::model::{Labels, LabelsBuilder, Matcher, METRIC_NAME};
use crate::promql::{Budget, MetricMetadata, QueryError, Selected, SelectedSeries, Source};
use crate::query::client::{CallError, Client, EndpointInfo, EndpointTls, SampleCap};
use crate::query::dedup;
use crate::query::endpoint::EndpointSpec;
use crate::query::QueryMetrics;

/// Longest an info call may take (an endpoint that accepts connections
/// but does not answer must not hold readiness for `--endpoint.timeout`).
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the fan-out reads and how.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// The `--endpoint` flags.
    pub endpoints: Vec<EndpointSpec>,
    /// `--query.replica-label`s: dropped from series, which are then
    /// de-duplicated.
    pub replica_labels: Vec<String>,
    /// `--query.partial-response`: answer with warnings when an endpoint
    /// fails (a request's `partial_response` overrides it).
    pub partial_response: bool,
    /// Longest one call to an endpoint may take (`--endpoint.timeout`);
    /// the query's own deadline bounds it too.
    pub endpoint_timeout: Duration,
    /// How often names are re-resolved and endpoints' info re-read.
    pub refresh_interval: Duration,
    /// The `Authorization` header value sent to every endpoint (basic
    /// auth or bearer token), if any.
    pub authorization: Option<String>,
    /// HTTPS to every endpoint (`--endpoint.tls*`), or plain HTTP.
    pub tls: Option<EndpointTls>,
}

/// One resolved endpoint.
#[derive(Debug, Clone)]
struct Endpoint {
    addr: String,
    /// The last info read (kept while the endpoint does not answer);
    /// `None` before the first success: never skipped then.
    info: Option<EndpointInfo>,
}

struct Inner {
    opts: FanoutOptions,
    client: Client,
    handle: Handle,
    metrics: Arc<QueryMetrics>,
    /// The addresses each spec resolved to last (kept when a lookup fails).
    resolved: Mutex<Vec<Vec<String>>>,
    endpoints: RwLock<Vec<Endpoint>>,
}

/// The query role's source; cheap to clone (one per request, with its
/// partial-response choice).
#[derive(Clone)]
pub struct Fanout {
    inner: Arc<Inner>,
    partial: bool,
}

/// One endpoint a read goes to.
struct Target {
    addr: String,
    external: Labels,
    /// The HA group: the external labels without the replica labels, when
    /// the endpoint has a replica label (`None`: not a replica).
    group: Option<Labels>,
    /// The matcher sets to send (external-label matchers removed).
    sets: Vec<Vec<Matcher>>,
}

impl Fanout {
    /// A fan-out with no endpoints resolved yet (call [`Fanout::refresh`]).
    ///
    /// # Errors
    /// When the `Authorization` value is not a valid header value.
    pub fn new(
        opts: FanoutOptions,
        metrics: Arc<QueryMetrics>,
        handle: Handle,
    ) -> Result<Self, hyper::header::InvalidHeaderValue> {
        let n = opts.endpoints.len();
        let authorization = opts
            .authorization
            .as_deref()
            .map(|a| {
                let mut v = hyper::header::HeaderValue::from_str(a)?;
                v.set_sensitive(true);
                Ok::<_, hyper::header::InvalidHeaderValue>(v)
            })
            .transpose()?;
        let client = Client::new(authorization, opts.tls.as_ref());
        Ok(Self {
            partial: opts.partial_response,
            inner: Arc::new(Inner {
                opts,
                client,
                handle,
                metrics,
                resolved: Mutex::new(vec![Vec::new(); n]),
                endpoints: RwLock::new(Vec::new()),
            }),
        })
    }

    /// Resolves every `--endpoint` and reads each endpoint's info.
    pub async fn refresh(&self) {
        let inner = &self.inner;
        let mut addrs: BTreeSet<String> = BTreeSet::new();
        for (i, spec) in inner.opts.endpoints.iter().enumerate() {
            match spec.resolve().await {
                Ok(found) => inner.resolved.lock()[i] = found,
                Err(e) => {
                    tracing::warn!(error = %e, "endpoint lookup failed; keeping the last addresses")
                }
            }
            addrs.extend(inner.resolved.lock()[i].iter().cloned());
        }
        let old: Vec<Endpoint> = inner.endpoints.read().clone();
        let deadline = Instant::now() + inner.opts.endpoint_timeout.min(INFO_TIMEOUT);
        let mut set = tokio::task::JoinSet::new();
        for addr in addrs {
            let client = inner.client.clone();
            let metrics = inner.metrics.clone();
            set.spawn(async move {
                let start = Instant::now();
                let r = client.info(&addr, deadline).await;
                let result = r
                    .as_ref()
                    .map_or_else(CallError::result_label, |_| "success");
                metrics.call(&addr, "info", result, start.elapsed().as_secs_f64());
                metrics.set_up(&addr, r.is_ok());
                if let Err(e) = &r {
                    tracing::debug!(endpoint = %addr, error = %e, "endpoint info failed");
                }
                (addr, r.ok())
            });
        }
        let mut new: Vec<Endpoint> = Vec::new();
        while let Some(joined) = set.join_next().await {
            let Ok((addr, info)) = joined else { continue };
            let info = info.or_else(|| {
                old.iter()
                    .find(|e| e.addr == addr)
                    .and_then(|e| e.info.clone())
            });
            new.push(Endpoint { addr, info });
        }
        new.sort_by(|a, b| a.addr.cmp(&b.addr));
        for gone in old.iter().filter(|o| !new.iter().any(|n| n.addr == o.addr)) {
            inner.metrics.forget(&gone.addr);
        }
        inner.metrics.set_endpoints(new.len());
        *inner.endpoints.write() = new;
    }

    /// Refreshes every `--endpoint.refresh-interval` until `stop` flips.
    pub async fn refresh_loop(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.inner.opts.refresh_interval) => self.refresh().await,
                _ = stop.changed() => return,
            }
        }
    }

    /// The endpoints resolved now, for logs and tests.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .endpoints
            .read()
            .iter()
            .map(|e| e.addr.clone())
            .collect()
    }

    /// The endpoints a read of `[mint, maxt]` with `sets` goes to (all
    /// series when `sets` is empty); the others are counted as skipped.
    ///
    /// # Errors
    /// When no `--endpoint` resolves to any address: an empty answer would
    /// look like "no data".
    fn targets(
        &self,
        mint: i64,
        maxt: i64,
        sets: &[Vec<Matcher>],
    ) -> Result<Vec<Target>, QueryError> {
        let endpoints = self.inner.endpoints.read().clone();
        if endpoints.is_empty() {
            return Err(QueryError::Unavailable(
                "no endpoint to query: no --endpoint resolved to an address yet".into(),
            ));
        }
        let mut out = Vec::new();
        for e in endpoints {
            let external = e
                .info
                .as_ref()
                .map(|i| i.external_labels.clone())
                .unwrap_or_default();
            let in_range = e.info.as_ref().is_none_or(|i| i.may_overlap(mint, maxt));
            let sets_here: Vec<Vec<Matcher>> = if sets.is_empty() {
                Vec::new()
            } else {
                sets.iter()
                    .filter_map(|ms| endpoint_matchers(&external, ms))
                    .collect()
            };
            if !in_range || (!sets.is_empty() && sets_here.is_empty()) {
                self.inner.metrics.skipped(&e.addr);
                continue;
            }
            let replicas = &self.inner.opts.replica_labels;
            let group = external
                .iter()
                .any(|l| replicas.iter().any(|r| **r == *l.name))
                .then(|| dedup::without(&external, replicas));
            out.push(Target {
                addr: e.addr,
                external,
                group,
                sets: sets_here,
            });
        }
        Ok(out)
    }

    /// Runs `call` against every target at once on the runtime, blocking
    /// this (query) thread until all have answered or failed.
    fn fan<T: Send + 'static, F>(
        &self,
        what: &'static str,
        targets: Vec<Target>,
        deadline: Instant,
        call: impl Fn(Client, Arc<Target>, Instant) -> F,
    ) -> Vec<(Arc<Target>, Result<T, CallError>)>
    where
        F: std::future::Future<Output = Result<T, CallError>> + Send + 'static,
    {
        let deadline = deadline.min(Instant::now() + self.inner.opts.endpoint_timeout);
        let metrics = self.inner.metrics.clone();
        let futures: Vec<_> = targets
            .into_iter()
            .map(|t| {
                let t = Arc::new(t);
                (t.clone(), call(self.inner.client.clone(), t, deadline))
            })
            .collect();
        self.inner.handle.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (i, (t, f)) in futures.into_iter().enumerate() {
                let metrics = metrics.clone();
                set.spawn(async move {
                    let start = Instant::now();
                    let r = f.await;
                    let result = r
                        .as_ref()
                        .map_or_else(CallError::result_label, |_| "success");
                    metrics.call(&t.addr, what, result, start.elapsed().as_secs_f64());
                    (i, t, r)
                });
            }
            let mut out = Vec::new();
            while let Some(joined) = set.join_next().await {
                if let Ok(x) = joined {
                    out.push(x);
                }
            }
            // Endpoint order: members of a de-duplicated group keep it.
            out.sort_by_key(|(i, _, _)| *i);
            out.into_iter().map(|(_, t, r)| (t, r)).collect()
        })
    }

    /// Hands each endpoint's answer to `take` (which returns the
    /// endpoint's own warnings), then decides what the failed endpoints
    /// mean: nothing lost when another replica of the same HA group
    /// answered (a warning says which replica is missing); otherwise the
    /// read's error, or (partial responses allowed) a warning naming the
    /// endpoint. Returns the answer's warnings.
    fn gather<T>(
        &self,
        results: Vec<(Arc<Target>, Result<T, CallError>)>,
        mut take: impl FnMut(&Target, T) -> Vec<String>,
    ) -> Result<Vec<String>, QueryError> {
        let mut warnings = Vec::new();
        let (mut failed, mut answered) = (Vec::new(), Vec::new());
        for (t, r) in results {
            match r {
                Ok(v) => {
                    warnings.extend(take(&t, v));
                    answered.push(t);
                }
                Err(e) => failed.push((t, e)),
            }
        }
        for (t, e) in failed {
            let addr = &t.addr;
            tracing::debug!(endpoint = %addr, error = %e, "endpoint call failed");
            let covered = t
                .group
                .as_ref()
                .is_some_and(|g| answered.iter().any(|a| a.group.as_ref() == Some(g)));
            match e {
                CallError::TooManySamples => return Err(QueryError::TooManySamples),
                e if covered => warnings.push(format!(
                    "replica endpoint {addr} did not answer ({e}); another replica of its HA group {} answered",
                    t.external
                )),
                e if self.partial => warnings.push(format!(
                    "endpoint {addr} left out of this partial response: {e}"
                )),
                CallError::Status { status, body } if (400..500).contains(&status) => {
                    return Err(QueryError::Exec(format!(
                        "endpoint {addr} refused the read: HTTP {status}: {body}"
                    )))
                }
                e => {
                    return Err(QueryError::Unavailable(format!(
                        "endpoint {addr} did not answer: {e} (partial_response=true answers without it)"
                    )))
                }
            }
        }
        Ok(warnings)
    }
}

/// `ms` as sent to an endpoint with `external` labels: matchers on an
/// external label are decided here (`None`: the endpoint cannot match)
/// and dropped; a set left matching everything gets `__name__=~".+"` (the
/// endpoint's remote read refuses a read of every series).
fn endpoint_matchers(external: &Labels, ms: &[Matcher]) -> Option<Vec<Matcher>> {
    let mut out = Vec::with_capacity(ms.len());
    for m in ms {
        match external.get(m.name()) {
            Some(v) if m.matches(v) => {}
            Some(_) => return None,
            None => out.push(m.clone()),
        }
    }
    if out.iter().all(Matcher::matches_empty) {
        out.push(Matcher::new(crate::model::MatchOp::Regex, METRIC_NAME, ".+").ok()?);
    }
    Some(out)
}

/// `labels` with `external` added where the series has no such label.
fn with_external(labels: Labels, external: &Labels) -> Labels {
    if external.is_empty() || external.iter().all(|l| labels.get(&l.name).is_some()) {
        return labels;
    }
    let mut b = LabelsBuilder::new();
    for l in labels.iter() {
        b.push_shared(l.name.clone(), l.value.clone());
    }
    for l in external.iter().filter(|l| labels.get(&l.name).is_none()) {
        b.push_shared(l.name.clone(), l.value.clone());
    }
    b.build().unwrap_or(labels)
}

fn matches_all(labels: &Labels, ms: &[Matcher]) -> bool {
    ms.iter()
        .all(|m| m.matches(labels.get(m.name()).unwrap_or("")))
}

/// A time in ms as the API's decimal seconds.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// `start=…&end=…&match[]=…` for the JSON calls.
fn query_string(mint: i64, maxt: i64, sets: &[Vec<Matcher>]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    // The API's own "all time" bounds are left out: the endpoint applies
    // its defaults (they do not round-trip as decimal seconds).
    if mint > i64::MIN / 2 {
        q.append_pair("start", &seconds(mint));
    }
    if maxt < i64::MAX / 2 {
        q.append_pair("end", &seconds(maxt));
    }
    for ms in sets {
        let sel: Vec<String> = ms.iter().map(ToString::to_string).collect();
        q.append_pair("match[]", &format!("{{{}}}", sel.join(",")));
    }
    q.finish()
}

fn json_strings(v: &serde_json::Value) -> Result<Vec<String>, CallError> {
    v.as_array()
        .ok_or_else(|| CallError::Decode("data is not an array".into()))?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| CallError::Decode("not a string".into()))
        })
        .collect()
}

impl Source for Fanout {
    fn select(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        budget: &dyn Budget,
    ) -> Result<Selected<Vec<SelectedSeries>>, QueryError> {
        let targets = self.targets(mint, maxt, &[matchers.to_vec()])?;
        let cap = SampleCap::new(budget.remaining_samples());
        let results = self.fan("read", targets, budget.deadline(), |client, t, deadline| {
            let cap = cap.clone();
            async move {
                let ms = t.sets.first().cloned().unwrap_or_default();
                client.read(&t.addr, mint, maxt, &ms, &cap, deadline).await
            }
        });
        budget.check()?;
        let mut all = Vec::new();
        let warnings = self.gather(results, |t, series| {
            for mut s in series {
                s.labels = with_external(s.labels, &t.external);
                if matches_all(&s.labels, matchers) {
                    all.push(s);
                }
            }
            Vec::new()
        })?;
        let data = dedup::merge(all, &self.inner.opts.replica_labels);
        for s in &data {
            budget.account(s.samples.len() + s.hists.len())?;
        }
        Ok(Selected { data, warnings })
    }

    fn series(
        &self,
        mint: i64,
        maxt: i64,
        sets: &[Vec<Matcher>],
        budget: &dyn Budget,
    ) -> Result<Selected<Vec<Labels>>, QueryError> {
        let targets = self.targets(mint, maxt, sets)?;
        let results = self.fan(
            "series",
            targets,
            budget.deadline(),
            |client, t, deadline| async move {
                let path = format!("/api/v1/series?{}", query_string(mint, maxt, &t.sets));
                let (data, warnings) = client.get_json(&t.addr, &path, deadline).await?;
                let list = data
                    .as_array()
                    .ok_or_else(|| CallError::Decode("data is not an array".into()))?;
                let mut out = Vec::with_capacity(list.len());
                for item in list {
                    let obj = item
                        .as_object()
                        .ok_or_else(|| CallError::Decode("a series is not an object".into()))?;
                    let mut b = LabelsBuilder::new();
                    for (k, v) in obj {
                        b.push(k, v.as_str().unwrap_or_default());
                    }
                    out.push(b.build().map_err(|e| CallError::Decode(e.to_string()))?);
                }
                Ok((out, warnings))
            },
        );
        budget.check()?;
        let mut set: BTreeSet<Labels> = BTreeSet::new();
        let warnings = self.gather(results, |t, (labels, w)| {
            for l in labels {
                let l = with_external(l, &t.external);
                if sets.iter().any(|ms| matches_all(&l, ms)) {
                    set.insert(dedup::without(&l, &self.inner.opts.replica_labels));
                }
            }
            w
        })?;
        Ok(Selected {
            data: set.into_iter().collect(),
            warnings,
        })
    }

    fn label_strings(
        &self,
        name: Option<&str>,
        mint: i64,
        maxt: i64,
        sets: &[Vec<Matcher>],
        budget: &dyn Budget,
    ) -> Result<Selected<Vec<String>>, QueryError> {
        let replicas = &self.inner.opts.replica_labels;
        if name.is_some_and(|n| replicas.iter().any(|r| r == n)) {
            // De-duplicated answers carry no replica label.
            return Ok(Selected::default());
        }
        let name = name.map(str::to_string);
        let targets = self.targets(mint, maxt, sets)?;
        let results = self.fan(
            "labels",
            targets,
            budget.deadline(),
            |client, t, deadline| {
                let name = name.clone();
                async move {
                    let qs = query_string(mint, maxt, &t.sets);
                    // An external label's value: the endpoint's, if it has
                    // any matching series.
                    let external = name
                        .as_deref()
                        .and_then(|n| t.external.get(n).map(str::to_string));
                    let path = match (&name, &external) {
                        (Some(_), Some(_)) | (None, _) => format!("/api/v1/labels?{qs}"),
                        (Some(n), None) => {
                            let n: String = form_urlencoded::byte_serialize(n.as_bytes()).collect();
                            format!("/api/v1/label/{n}/values?{qs}")
                        }
                    };
                    let (data, warnings) = client.get_json(&t.addr, &path, deadline).await?;
                    let mut got = json_strings(&data)?;
                    match (&name, external) {
                        (Some(_), Some(v)) => {
                            got = if got.is_empty() { Vec::new() } else { vec![v] }
                        }
                        (None, _) if !got.is_empty() => {
                            got.extend(t.external.iter().map(|l| l.name.to_string()))
                        }
                        _ => {}
                    }
                    Ok((got, warnings))
                }
            },
        );
        budget.check()?;
        let mut set: BTreeSet<String> = BTreeSet::new();
        let warnings = self.gather(results, |_, (got, w)| {
            set.extend(got);
            w
        })?;
        if name.is_none() {
            set.retain(|n| !replicas.iter().any(|r| r == n));
        }
        Ok(Selected {
            data: set.into_iter().collect(),
            warnings,
        })
    }

    fn metadata(
        &self,
        metric: Option<&str>,
        budget: &dyn Budget,
    ) -> Option<Result<Selected<Vec<MetricMetadata>>, QueryError>> {
        let targets = match self.targets(i64::MIN, i64::MAX, &[]) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let path = match metric {
            Some(m) => format!(
                "/api/v1/metadata?metric={}",
                form_urlencoded::byte_serialize(m.as_bytes()).collect::<String>()
            ),
            None => "/api/v1/metadata".to_string(),
        };
        let results = self.fan(
            "metadata",
            targets,
            budget.deadline(),
            |client, t, deadline| {
                let path = path.clone();
                async move {
                    let (data, warnings) = client.get_json(&t.addr, &path, deadline).await?;
                    let obj = data
                        .as_object()
                        .ok_or_else(|| CallError::Decode("data is not an object".into()))?;
                    let text = |e: &serde_json::Value, k: &str| {
                        e.get(k)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let mut out = Vec::new();
                    for (name, entries) in obj {
                        for e in entries.as_array().into_iter().flatten() {
                            out.push(MetricMetadata {
                                metric: name.clone(),
                                metric_type: text(e, "type"),
                                help: text(e, "help"),
                                unit: text(e, "unit"),
                            });
                        }
                    }
                    Ok((out, warnings))
                }
            },
        );
        let mut set = BTreeSet::new();
        let warnings = self.gather(results, |_, (got, w)| {
            set.extend(got);
            w
        });
        Some(warnings.map(|warnings| Selected {
            data: set.into_iter().collect(),
            warnings,
        }))
    }

    fn for_request(&self, partial_response: Option<bool>) -> Option<Arc<dyn Source>> {
        let partial = partial_response?;
        Some(Arc::new(Fanout {
            inner: self.inner.clone(),
            partial,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_label_matchers_are_decided_per_endpoint() {
        let ext = Labels::from_static(&[("cluster", "eu"), ("replica", "a")]);
        let name = Matcher::eq(METRIC_NAME, "up");
        // Matches the external value: dropped.
        assert_eq!(
            endpoint_matchers(&ext, &[name.clone(), Matcher::eq("cluster", "eu")]),
            Some(vec![name.clone()])
        );
        // Cannot match: the endpoint is skipped.
        assert_eq!(
            endpoint_matchers(&ext, &[name.clone(), Matcher::eq("cluster", "us")]),
            None
        );
        // Only external matchers: every series of the endpoint.
        let all = endpoint_matchers(&ext, &[Matcher::eq("replica", "a")]).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].to_string(), "__name__=~\".+\"");
    }

    #[test]
    fn external_labels_are_added_without_overriding_the_series_own() {
        let ext = Labels::from_static(&[("job", "ext"), ("replica", "a")]);
        let got = with_external(
            Labels::from_static(&[("__name__", "up"), ("job", "own")]),
            &ext,
        );
        assert_eq!(
            got,
            Labels::from_static(&[("__name__", "up"), ("job", "own"), ("replica", "a")])
        );
    }

    struct Unlimited;

    impl Budget for Unlimited {
        fn check(&self) -> Result<(), QueryError> {
            Ok(())
        }
        fn account(&self, _: usize) -> Result<(), QueryError> {
            Ok(())
        }
        fn deadline(&self) -> Instant {
            Instant::now() + Duration::from_secs(5)
        }
        fn remaining_samples(&self) -> usize {
            usize::MAX
        }
    }

    #[test]
    fn no_resolved_endpoint_is_an_error_not_an_empty_answer() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let fanout = Fanout::new(
            FanoutOptions {
                endpoints: Vec::new(),
                replica_labels: Vec::new(),
                partial_response: true,
                endpoint_timeout: Duration::from_secs(1),
                refresh_interval: Duration::from_secs(1),
                authorization: None,
                tls: None,
            },
            QueryMetrics::register(&mut registry),
            rt.handle().clone(),
        )
        .unwrap();
        let e = fanout
            .select(0, 1, &[Matcher::eq(METRIC_NAME, "up")], &Unlimited)
            .unwrap_err();
        assert!(matches!(e, QueryError::Unavailable(m) if m.contains("no endpoint")));
        let e = fanout
            .label_strings(None, 0, 1, &[], &Unlimited)
            .unwrap_err();
        assert!(matches!(e, QueryError::Unavailable(_)));
    }

    #[test]
    fn all_time_bounds_are_left_to_the_endpoint() {
        assert_eq!(query_string(i64::MIN + 5, i64::MAX - 5, &[]), "");
        assert_eq!(query_string(1_500, 2_000, &[]), "start=1.500&end=2.000");
    }

    #[test]
    fn times_are_sent_as_decimal_seconds() {
        assert_eq!(seconds(1_500), "1.500");
        assert_eq!(seconds(-1_500), "-1.500");
        assert_eq!(seconds(0), "0.000");
    }
}
