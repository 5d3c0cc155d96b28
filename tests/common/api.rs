//! In-process API test harness: a router over a fresh Db with a receiver,
//! requests through `oneshot`, and a small fixed data set.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tidemark::api::{router, ApiOptions, AppState};
use tidemark::ingest::{Receiver, ReceiverOptions};
use tidemark::model::{Labels, Sample};
use tidemark::storage::{Db, Options, SeriesSamples};
use tower::ServiceExt;

/// 2023-11-14T22:13:20Z, the first sample of the fixture.
pub(crate) const T0: i64 = 1_700_000_000_000;

pub(crate) struct Api {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) db: Arc<Db>,
    pub(crate) receiver: Arc<Receiver>,
    pub(crate) app: axum::Router,
}

pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub(crate) fn api_with(opts: ApiOptions) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let state = AppState::with_options(opts);
    let receiver = Arc::new(Receiver::with_metrics(
        db.clone(),
        ReceiverOptions::default(),
        state.ingest_metrics(),
    ));
    state.set_ready(db.clone(), receiver.clone());
    Api {
        _dir: dir,
        db,
        receiver,
        app: router(state),
    }
}

pub(crate) fn api() -> Api {
    api_with(ApiOptions::default())
}

/// `api()` loaded with the fixture: every 15 s over 10 min from [`T0`],
/// `up{instance="i1",job="a"}` = 1, `up{instance="i2",job="b"}` = 0,
/// `requests_total{"http.status"="200",job="a"}` = 10·i.
pub(crate) fn fixture_with(opts: ApiOptions) -> Api {
    let a = api_with(opts);
    let grid = |f: &dyn Fn(usize) -> f64| -> Vec<Sample> {
        (0..=40)
            .map(|i| Sample::new(T0 + i as i64 * 15_000, f(i)))
            .collect()
    };
    let l = |pairs: &[(&str, &str)]| Labels::from_static(pairs);
    let batch = vec![
        SeriesSamples {
            created: Vec::new(),
            histograms: Vec::new(),
            labels: l(&[("__name__", "up"), ("instance", "i1"), ("job", "a")]),
            samples: grid(&|_| 1.0),
        },
        SeriesSamples {
            created: Vec::new(),
            histograms: Vec::new(),
            labels: l(&[("__name__", "up"), ("instance", "i2"), ("job", "b")]),
            samples: grid(&|_| 0.0),
        },
        SeriesSamples {
            created: Vec::new(),
            histograms: Vec::new(),
            labels: l(&[
                ("__name__", "requests_total"),
                ("http.status", "200"),
                ("job", "a"),
            ]),
            samples: grid(&|i| i as f64 * 10.0),
        },
    ];
    a.db.append(&batch).unwrap();
    a
}

pub(crate) fn fixture() -> Api {
    fixture_with(ApiOptions::default())
}

pub(crate) async fn send(app: &axum::Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub(crate) async fn get(app: &axum::Router, uri: &str) -> Resp {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// POST `form` as `application/x-www-form-urlencoded` (as Grafana does).
pub(crate) async fn post(app: &axum::Router, path: &str, form: &str) -> Resp {
    let req = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap();
    send(app, req).await
}

/// Percent-encodes a form value.
pub(crate) fn enc(s: &str) -> String {
    super::http::encode(s)
}
