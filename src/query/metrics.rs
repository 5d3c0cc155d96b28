//! `tidemark_query_endpoint_*`: what the query role's fan-out did per
//! endpoint. Registered in the query role only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointCallResult {
    endpoint: String,
    call: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointCall {
    endpoint: String,
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// Every `call` label value.
const CALLS: [&str; 5] = ["read", "series", "labels", "metadata", "info"];
/// Every `result` label value ([`super::CallError::result_label`] and
/// `success`).
const RESULTS: [&str; 6] = [
    "success",
    "timeout",
    "unreachable",
    "http_error",
    "bad_answer",
    "sample_limit",
];

fn latency() -> Histogram {
    // 1 ms .. ~150 s, as the HTTP handler histogram.
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

/// The fan-out's counters.
#[derive(Debug)]
pub struct QueryMetrics {
    requests: Family<EndpointCallResult, Counter>,
    duration: Family<EndpointCall, Histogram>,
    skipped: Family<EndpointLabel, Counter>,
    up: Family<EndpointLabel, Gauge>,
    endpoints: Gauge,
}

impl QueryMetrics {
    /// Registers the metrics.
    pub fn register(registry: &mut Registry) -> std::sync::Arc<Self> {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency),
            skipped: Family::default(),
            up: Family::default(),
            endpoints: Gauge::default(),
        };
        registry.register(
            "tidemark_query_endpoint_requests",
            "Calls to endpoints by endpoint, call (read, series, labels, metadata, info) and result (success, timeout, unreachable, http_error, bad_answer, sample_limit).",
            m.requests.clone(),
        );
        registry.register(
            "tidemark_query_endpoint_request_duration_seconds",
            "Time an endpoint took to answer a call, by endpoint and call.",
            m.duration.clone(),
        );
        registry.register(
            "tidemark_query_endpoint_skipped",
            "Reads not sent to an endpoint because its time range or external labels cannot match.",
            m.skipped.clone(),
        );
        registry.register(
            "tidemark_query_endpoint_up",
            "1 if the endpoint's last info call succeeded, 0 if not.",
            m.up.clone(),
        );
        registry.register(
            "tidemark_query_endpoints",
            "Endpoints the --endpoint flags resolve to now.",
            m.endpoints.clone(),
        );
        std::sync::Arc::new(m)
    }

    /// Counts one call and its latency.
    pub(crate) fn call(
        &self,
        endpoint: &str,
        call: &'static str,
        result: &'static str,
        seconds: f64,
    ) {
        self.requests
            .get_or_create(&EndpointCallResult {
                endpoint: endpoint.to_string(),
                call,
                result,
            })
            .inc();
        self.duration
            .get_or_create(&EndpointCall {
                endpoint: endpoint.to_string(),
                call,
            })
            .observe(seconds);
    }

    /// Counts a read not sent to `endpoint`.
    pub(crate) fn skipped(&self, endpoint: &str) {
        self.skipped
            .get_or_create(&EndpointLabel {
                endpoint: endpoint.to_string(),
            })
            .inc();
    }

    /// Sets whether `endpoint` answered its last info call.
    pub(crate) fn set_up(&self, endpoint: &str, up: bool) {
        self.up
            .get_or_create(&EndpointLabel {
                endpoint: endpoint.to_string(),
            })
            .set(i64::from(up));
    }

    /// Forgets an endpoint that no longer resolves (a pod gone from a
    /// headless Service), so churning addresses do not grow the series.
    pub(crate) fn forget(&self, endpoint: &str) {
        let one = EndpointLabel {
            endpoint: endpoint.to_string(),
        };
        self.up.remove(&one);
        self.skipped.remove(&one);
        for call in CALLS {
            self.duration.remove(&EndpointCall {
                endpoint: endpoint.to_string(),
                call,
            });
            for result in RESULTS {
                self.requests.remove(&EndpointCallResult {
                    endpoint: endpoint.to_string(),
                    call,
                    result,
                });
            }
        }
    }

    /// Sets the number of resolved endpoints.
    pub(crate) fn set_endpoints(&self, n: usize) {
        self.endpoints.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_endpoint_leaves_no_series() {
        let mut registry = Registry::default();
        let m = QueryMetrics::register(&mut registry);
        for (call, result) in [
            ("read", "success"),
            ("info", "timeout"),
            ("metadata", "bad_answer"),
        ] {
            m.call("10.0.0.1:9201", call, result, 0.01);
        }
        m.skipped("10.0.0.1:9201");
        m.set_up("10.0.0.1:9201", true);
        m.call("10.0.0.2:9201", "read", "success", 0.01);
        m.forget("10.0.0.1:9201");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("10.0.0.1"), "{text}");
        assert!(text.contains("10.0.0.2"), "{text}");
    }
}
