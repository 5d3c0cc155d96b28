//! `--web.config.file` end to end, with real clients over real TLS: the
//! `tidemark` binary with certificates made here by `rcgen`, driven by
//! `curl`, Debian's Prometheus 2.42 (remote write with `basic_auth`,
//! `tls_config.ca_file` and a client certificate) and `promtool`; roles
//! (401 / 403, nothing stored), the health probes open, reload on SIGHUP,
//! and the same file accepted by Prometheus itself. Every wait is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::http;
use common::proc::{free_port, start_prometheus_with, start_tidemark_with, wait_until, Proc};
use prost::Message;
use tidemark::ingest::proto::prometheus as v1;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// bcrypt at the lowest cost, to keep the tests fast (any cost is valid).
fn hash(secret: &str) -> String {
    bcrypt::hash(secret, 4).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A test CA with a server certificate for 127.0.0.1 and localhost (and
/// an expired one), and a client certificate, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    expired_cert: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    expired_client_cert: PathBuf,
    expired_client_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "tidemark test CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = p.self_signed(&ca_key).unwrap();
    let leaf = |client: bool, expired: bool| {
        let key = KeyPair::generate().unwrap();
        let names = if client {
            vec!["agent".to_string()]
        } else {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        };
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "tidemark test");
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key) = leaf(false, false);
    let (expired_cert, expired_key) = leaf(false, true);
    let (client_cert, client_key) = leaf(true, false);
    let (expired_client_cert, expired_client_key) = leaf(true, true);
    write("expired-key.pem", &expired_key);
    write("server.pem", &cert);
    write("server-key.pem", &key);
    Pki {
        ca: write("ca.pem", &ca.pem()),
        expired_cert: write("expired.pem", &expired_cert),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
        expired_client_cert: write("expired-client.pem", &expired_client_cert),
        expired_client_key: write("expired-client-key.pem", &expired_client_key),
    }
}

/// A node that serves TLS and requires a verified client certificate (and
/// the users of [`users_yaml`]), ready; returns its port, the process and
/// the CA, client certificate and key paths as strings for curl.
fn start_mtls_node(dir: &Path, pki: &Pki) -> (u16, Proc, [String; 3]) {
    let (port, _addr, _file, mut tm) = start_on(
        dir,
        &tls_web("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"),
    );
    let files = [&pki.ca, &pki.client_cert, &pki.client_key].map(|p| p.display().to_string());
    let [ca, cert, key] = &files;
    let ready = format!("https://127.0.0.1:{port}/-/ready");
    wait_until("tidemark ready (mTLS)", Duration::from_secs(60), || {
        if let Ok(Some(st)) = tm.0.try_wait() {
            panic!("tidemark exited early with {st}");
        }
        curl(&["--cacert", ca, "--cert", cert, "--key", key, &ready]).1 == 200
    });
    (port, tm, files)
}

/// Users of every role; passwords are the user names with `pw`.
fn users_yaml() -> String {
    format!(
        "basic_auth_users:\n  root: '{}'\ntidemark:\n  users:\n    agent: {{role: write, password: '{}'}}\n    grafana: {{role: read, password: '{}'}}\n    robot: {{role: write, bearer_token: '{}'}}\n",
        hash("rootpw"),
        hash("agentpw"),
        hash("grafanapw"),
        hash("robot-token"),
    )
}

/// `curl` with a 10 s limit: the exit code and (on success) the status.
fn curl(args: &[&str]) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_string(),
    )
}

fn write_body(metric: &str) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let label = |n: &str, v: &str| v1::Label {
        name: n.to_string().into(),
        value: v.to_string().into(),
    };
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![label("__name__", metric), label("job", "t")],
            samples: vec![v1::Sample {
                value: 1.0,
                timestamp: now,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

const WRITE_HEADERS: [(&str, &str); 2] = [
    (
        "Content-Type",
        "application/x-protobuf;proto=prometheus.WriteRequest",
    ),
    ("Content-Encoding", "snappy"),
];

fn write_plain(addr: &str, auth: Option<&str>, metric: &str) -> u16 {
    let mut headers = WRITE_HEADERS.to_vec();
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    http::request(addr, "POST", "/api/v1/write", &headers, &write_body(metric))
        .expect("tidemark answers")
        .0
}

fn get_plain(addr: &str, path: &str, auth: Option<&str>) -> http::Response {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    http::request_full(addr, "GET", path, &headers, b"").expect("tidemark answers")
}

/// How many series match `sel` (asked as `root`).
fn series_count(addr: &str, sel: &str) -> usize {
    let r = get_plain(
        addr,
        &format!("/api/v1/series?match[]={}", http::encode(sel)),
        Some(&basic("root", "rootpw")),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["data"].as_array().unwrap().len()
}

fn wait_ready_plain(p: &mut Proc, addr: &str) {
    common::proc::wait_ready(p, addr, Duration::from_secs(60));
}

fn start_with_file(addr: &str, data: &Path, file: &Path) -> Proc {
    start_tidemark_with(
        addr,
        data,
        &[&format!("--web.config.file={}", file.display())],
    )
}

/// Writes `web` as `<dir>/web.yml` and starts tidemark on it, data in
/// `<dir>/data`, on a free port. Returns the port, the address, the file
/// and the process (not waited for: TLS and plain nodes get ready apart).
fn start_on(dir: &Path, web: &str) -> (u16, String, std::path::PathBuf, Proc) {
    let file = dir.join("web.yml");
    std::fs::write(&file, web).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let tm = start_with_file(&addr, &dir.join("data"), &file);
    (port, addr, file, tm)
}

/// `tls_server_config` with the test server certificate, then `extra`
/// (indented under it) and the users of [`users_yaml`].
fn tls_web(extra: &str) -> String {
    format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n{extra}{}",
        users_yaml()
    )
}

#[test]
fn web_config_roles_over_plain_http_answer_401_403_and_store_nothing_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yml");
    std::fs::write(
        &file,
        format!(
            "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            users_yaml()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut tm = start_with_file(&addr, &dir.path().join("data"), &file);
    wait_ready_plain(&mut tm, &addr);

    // Probes without credentials.
    assert_eq!(get_plain(&addr, "/-/healthy", None).status, 200);
    assert_eq!(get_plain(&addr, "/-/ready", None).status, 200);

    // 401 with WWW-Authenticate, the same answer for an unknown user and a
    // wrong password.
    let none = get_plain(&addr, "/api/v1/query?query=1", None);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Basic"));
    assert_eq!(none.header("x-frame-options"), Some("deny"));
    let wrong_pw = get_plain(&addr, "/api/v1/query?query=1", Some(&basic("grafana", "x")));
    let no_user = get_plain(&addr, "/api/v1/query?query=1", Some(&basic("nobody", "x")));
    assert_eq!((wrong_pw.status, no_user.status), (401, 401));
    assert_eq!(wrong_pw.body, no_user.body);
    assert_eq!(get_plain(&addr, "/nope", None).status, 401);

    // Roles: write cannot read, read cannot write or administrate.
    let agent = basic("agent", "agentpw");
    let grafana = basic("grafana", "grafanapw");
    assert_eq!(
        get_plain(&addr, "/api/v1/query?query=1", Some(&agent)).status,
        403
    );
    assert_eq!(write_plain(&addr, Some(&grafana), "refused_read"), 403);
    assert_eq!(write_plain(&addr, None, "refused_none"), 401);
    assert_eq!(
        write_plain(&addr, Some(&basic("agent", "wrong")), "refused_pw"),
        401
    );
    let admin = http::request(
        &addr,
        "POST",
        "/api/v1/admin/tsdb/snapshot",
        &[("Authorization", &grafana)],
        b"",
    )
    .unwrap();
    assert_eq!(admin.0, 403);

    // The right roles; twice, the second from the verified cache.
    for _ in 0..2 {
        assert_eq!(write_plain(&addr, Some(&agent), "stored_basic"), 204);
    }
    assert_eq!(
        write_plain(&addr, Some("Bearer robot-token"), "stored_bearer"),
        204
    );
    assert_eq!(
        write_plain(&addr, Some("Bearer wrong-token"), "refused_token"),
        401
    );
    let q = get_plain(&addr, "/api/v1/query?query=stored_basic", Some(&grafana));
    assert_eq!(q.status, 200);
    assert!(String::from_utf8_lossy(&q.body).contains("stored_basic"));
    assert_eq!(series_count(&addr, "{__name__=~\"stored_.*\"}"), 2);
    assert_eq!(series_count(&addr, "{__name__=~\"refused_.*\"}"), 0);

    // Failures are counted; /metrics needs `read` by default.
    assert_eq!(get_plain(&addr, "/metrics", None).status, 401);
    let m = get_plain(&addr, "/metrics", Some(&grafana));
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&m.body);
    for reason in ["missing", "invalid", "forbidden"] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "tidemark_http_auth_failures_total{{reason=\"{reason}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no failure counter for {reason}:\n{text}"));
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1.0, "{line}");
    }
    tm.terminate(Duration::from_secs(30));
}

#[test]
fn web_config_unknown_key_or_bad_hash_fails_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (text, named) in [
        (
            "basic_auth_users:\n  a: b\nbasic_auth_userz: {}\n",
            "basic_auth_userz",
        ),
        ("tls_server_config:\n  certfile: x\n", "certfile"),
        ("basic_auth_users:\n  alice: secret\n", "alice"),
    ] {
        let file = dir.path().join("bad.yml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg(format!("--web.config.file={}", file.display()))
            .arg("--listen=127.0.0.1:0")
            .arg(format!("--data-dir={}", dir.path().join("d").display()))
            .output()
            .unwrap();
        assert!(!out.status.success());
        // The error is logged (stdout) by main.
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(err.contains(named), "{text}: {err}");
    }
}

/// Waits until `GET /-/ready` over TLS (trusting `ca`, as `root`, for
/// Prometheus guards its probes too) answers 200.
fn wait_ready_tls(p: &mut Proc, port: u16, ca: &Path) {
    let url = format!("https://127.0.0.1:{port}/-/ready");
    let ca = ca.display().to_string();
    let what = p.1;
    wait_until(
        &format!("{what} ready over TLS"),
        Duration::from_secs(60),
        || {
            if let Ok(Some(st)) = p.0.try_wait() {
                panic!("{what} exited early with {st}");
            }
            curl(&["--cacert", &ca, "-u", "root:rootpw", &url]).1 == 200
        },
    );
}

#[test]
fn web_config_tls_curl_prometheus_remote_write_and_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (port, addr, _file, mut tm) = start_on(dir.path(), &tls_web("  min_version: TLS12\n"));
    wait_ready_tls(&mut tm, port, &pki.ca);
    let ca = pki.ca.display().to_string();
    let base = format!("https://127.0.0.1:{port}");

    // curl: verified TLS; 401 / 403 / 200 by credentials.
    let q = format!("{base}/api/v1/query?query=1");
    assert_eq!(curl(&["--cacert", &ca, &q]).1, 401);
    assert_eq!(curl(&["--cacert", &ca, "-u", "grafana:nope", &q]).1, 401);
    assert_eq!(curl(&["--cacert", &ca, "-u", "agent:agentpw", &q]).1, 403);
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "grafana:grafanapw", &q]).1,
        200
    );
    assert_eq!(
        curl(&["--cacert", &ca, &format!("{base}/-/healthy")]).1,
        200
    );
    // Without the CA the client refuses the certificate (exit 60).
    assert_eq!(curl(&[&q]).0, 60);
    // Plain HTTP on the TLS port: no HTTP answer.
    let plain = http::request(&addr, "GET", "/-/healthy", &[], b"");
    assert!(
        plain.as_ref().is_none_or(|r| r.0 != 200),
        "plain HTTP answered on a TLS port"
    );

    // Debian's Prometheus remote-writes over TLS with basic auth; a queue
    // with a wrong password and one with a read-only user store nothing.
    let prom_port = free_port();
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let rw = |user: &str, pw: &str, tag: &str| {
        format!(
            "  - url: {base}/api/v1/write\n    basic_auth: {{username: {user}, password: {pw}}}\n    tls_config: {{ca_file: {ca}}}\n    queue_config: {{batch_send_deadline: 1s}}\n    write_relabel_configs:\n      - target_label: rw_queue\n        replacement: {tag}\n"
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{prom_addr}']\nremote_write:\n{}{}{}",
        rw("agent", "agentpw", "good"),
        rw("agent", "wrong", "bad_password"),
        rw("grafana", "grafanapw", "wrong_role"),
    );
    // Failures so far (from curl above), to see the refused queues' own.
    let metric = |reason: &str| -> f64 {
        let (_, _, body) = curl(&[
            "--cacert",
            &ca,
            "-u",
            "root:rootpw",
            &format!("{base}/metrics"),
        ]);
        body.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "tidemark_http_auth_failures_total{{reason=\"{reason}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let (invalid_before, forbidden_before) = (metric("invalid"), metric("forbidden"));
    let prom_dir = dir.path().join("prom");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let _prom = start_prometheus_with(PROMETHEUS, &prom_addr, &prom_dir, &config, &[]);
    let series = |sel: &str| {
        let url = format!("{base}/api/v1/series?match[]={}", http::encode(sel));
        let (_, code, body) = curl(&["--cacert", &ca, "-u", "root:rootpw", &url]);
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"].as_array().unwrap().len()
    };
    wait_until(
        "Prometheus's samples in tidemark",
        Duration::from_secs(60),
        || series("up{rw_queue=\"good\"}") > 0,
    );
    // The refused queues sent as long: wait until both were counted as
    // failures, then check nothing of theirs is stored.
    wait_until("refused remote writes", Duration::from_secs(30), || {
        metric("invalid") > invalid_before && metric("forbidden") > forbidden_before
    });
    assert_eq!(series("{rw_queue=\"bad_password\"}"), 0);
    assert_eq!(series("{rw_queue=\"wrong_role\"}"), 0);

    // promtool 2.42 has no --http.config.file (2.43 added it): it takes
    // the credentials in the URL and the CA from SSL_CERT_FILE (Go).
    let out = Command::new(PROMTOOL)
        .env("SSL_CERT_FILE", &pki.ca)
        .args([
            "query",
            "instant",
            &format!("https://grafana:grafanapw@127.0.0.1:{port}"),
            "count(up{rw_queue=\"good\"})",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("=> 1"));
    let out = Command::new(PROMTOOL)
        .env("SSL_CERT_FILE", &pki.ca)
        .args([
            "query",
            "instant",
            &format!("https://agent:agentpw@127.0.0.1:{port}"),
            "up",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a write-only user queried");
    tm.terminate(Duration::from_secs(30));
}

#[test]
fn web_config_expired_certificate_fails_the_client_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (port, _addr, _file, mut tm) = start_on(
        dir.path(),
        "tls_server_config:\n  cert_file: expired.pem\n  key_file: expired-key.pem\n",
    );
    let ca = pki.ca.display().to_string();
    let url = format!("https://127.0.0.1:{port}/-/healthy");
    // Up (the handshake completes when the client skips verification) ...
    wait_until("tidemark up", Duration::from_secs(60), || {
        curl(&["-k", &url]).1 == 200
    });
    // ... but a verifying client refuses the expired certificate.
    let (exit, code, _) = curl(&["--cacert", &ca, &url]);
    assert_eq!((exit, code), (60, 0));
    assert!(pki.expired_cert.exists());
    tm.terminate(Duration::from_secs(30));
}

#[test]
fn web_config_client_certificate_required_prometheus_with_cert_writes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (port, mut tm, [ca, cert, key]) = start_mtls_node(dir.path(), &pki);
    let base = format!("https://127.0.0.1:{port}");
    let ready = format!("{base}/-/ready");
    // Without a client certificate, or with an expired one: no HTTP
    // answer at all (the server fails the handshake).
    let (exit, code, _) = curl(&["--cacert", &ca, &ready]);
    assert_ne!(exit, 0);
    assert_eq!(code, 0);
    let (exit, code, _) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &pki.expired_client_cert.display().to_string(),
        "--key",
        &pki.expired_client_key.display().to_string(),
        &ready,
    ]);
    assert_ne!(exit, 0);
    assert_eq!(code, 0);

    let prom_port = free_port();
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{prom_addr}']\nremote_write:\n  - url: {base}/api/v1/write\n    basic_auth: {{username: agent, password: agentpw}}\n    tls_config: {{ca_file: {ca}, cert_file: {cert}, key_file: {key}}}\n    queue_config: {{batch_send_deadline: 1s}}\n"
    );
    let prom_dir = dir.path().join("prom");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let _prom = start_prometheus_with(PROMETHEUS, &prom_addr, &prom_dir, &config, &[]);
    let url = format!("{base}/api/v1/series?match[]={}", http::encode("up"));
    wait_until(
        "Prometheus's samples over mTLS",
        Duration::from_secs(60),
        || {
            let (_, code, body) = curl(&[
                "--cacert",
                &ca,
                "--cert",
                &cert,
                "--key",
                &key,
                "-u",
                "grafana:grafanapw",
                &url,
            ]);
            code == 200 && body.contains("\"job\":\"prometheus\"")
        },
    );
    tm.terminate(Duration::from_secs(30));
}

#[test]
fn web_config_same_file_accepted_by_prometheus_and_tidemark() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let file = dir.path().join("web.yml");
    // Everything exporter-toolkit 0.9 (Prometheus 2.42) knows that rustls
    // can do; no `tidemark:` key.
    std::fs::write(
        &file,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  min_version: TLS12\n  max_version: TLS13\n  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\n  curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: true\nhttp_server_config:\n  http2: true\n  headers:\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  root: '{}'\n",
            hash("rootpw")
        ),
    )
    .unwrap();
    let check = Command::new(PROMTOOL)
        .args(["check", "web-config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let ca = pki.ca.display().to_string();
    let prom_port = free_port();
    let prom_dir = dir.path().join("prom");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let mut prom = start_prometheus_with(
        PROMETHEUS,
        &format!("127.0.0.1:{prom_port}"),
        &prom_dir,
        "global:\n  scrape_interval: 1h\n",
        &[&format!("--web.config.file={}", file.display())],
    );
    let tm_port = free_port();
    let mut tm = start_with_file(
        &format!("127.0.0.1:{tm_port}"),
        &dir.path().join("data"),
        &file,
    );
    for (p, port) in [(&mut prom, prom_port), (&mut tm, tm_port)] {
        wait_ready_tls(p, port, &pki.ca);
        let q = format!("https://127.0.0.1:{port}/api/v1/query?query=1");
        assert_eq!(curl(&["--cacert", &ca, &q]).1, 401, "{}", p.1);
        assert_eq!(
            curl(&["--cacert", &ca, "-u", "root:rootpw", &q]).1,
            200,
            "{}",
            p.1
        );
    }
    tm.terminate(Duration::from_secs(30));
}

#[test]
fn web_config_reload_on_sighup_swaps_password_in_flight_request_completes() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yml");
    std::fs::write(
        &file,
        format!("basic_auth_users:\n  root: '{}'\n", hash("old")),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut tm = start_with_file(&addr, &dir.path().join("data"), &file);
    wait_ready_plain(&mut tm, &addr);
    let old = basic("root", "old");
    let new = basic("root", "new");
    assert_eq!(write_plain(&addr, Some(&old), "before_reload"), 204);

    // A request in flight: headers and half the body sent with the old
    // password before the reload, the rest after.
    let body = write_body("in_flight");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Encoding: snappy\r\nAuthorization: {old}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        WRITE_HEADERS[0].1,
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();

    // A broken file is refused and the old one stays.
    std::fs::write(&file, "basic_auth_users: [\n").unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &tm.0.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(write_plain(&addr, Some(&old), "still_old"), 204);

    std::fs::write(
        &file,
        format!("basic_auth_users:\n  root: '{}'\n", hash("new")),
    )
    .unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &tm.0.id().to_string()])
        .status();
    wait_until("new password in force", Duration::from_secs(10), || {
        write_plain(&addr, Some(&new), "after_reload") == 204
    });
    assert_eq!(write_plain(&addr, Some(&old), "old_refused"), 401);

    // A change without SIGHUP is noticed by the poll.
    let newer = basic("root", "newer");
    std::fs::write(
        &file,
        format!("basic_auth_users:\n  root: '{}'\n", hash("newer")),
    )
    .unwrap();
    wait_until("file change noticed", Duration::from_secs(10), || {
        write_plain(&addr, Some(&newer), "after_poll") == 204
    });
    assert_eq!(write_plain(&addr, Some(&new), "new_refused"), 401);

    s.write_all(&body[body.len() / 2..]).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
    assert_eq!(
        series_count_as(&addr, &newer, "{__name__=\"in_flight\"}"),
        1
    );
    assert_eq!(
        series_count_as(&addr, &newer, "{__name__=~\".*_refused\"}"),
        0
    );
    tm.terminate(Duration::from_secs(30));
}

fn series_count_as(addr: &str, auth: &str, sel: &str) -> usize {
    let r = get_plain(
        addr,
        &format!("/api/v1/series?match[]={}", http::encode(sel)),
        Some(auth),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["data"].as_array().unwrap().len()
}

#[test]
fn web_config_certificate_change_is_picked_up_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = pki(dir.path());
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let second = pki(&other_dir);
    let (port, _addr, _file, mut tm) = start_on(
        dir.path(),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n",
    );
    let url = format!("https://127.0.0.1:{port}/-/healthy");
    let (ca1, ca2) = (
        first.ca.display().to_string(),
        second.ca.display().to_string(),
    );
    wait_until(
        "up with the first certificate",
        Duration::from_secs(60),
        || curl(&["--cacert", &ca1, &url]).1 == 200,
    );
    // cert-manager style: the files are replaced, the config is not.
    for f in ["server.pem", "server-key.pem"] {
        std::fs::copy(other_dir.join(f), dir.path().join(f)).unwrap();
    }
    wait_until(
        "the second certificate in use",
        Duration::from_secs(15),
        || curl(&["--cacert", &ca2, &url]).1 == 200,
    );
    // The old CA no longer verifies it: no HTTP answer.
    let (exit, code, _) = curl(&["--cacert", &ca1, &url]);
    assert!(exit != 0 && code == 0, "curl exit {exit}, status {code}");
    tm.terminate(Duration::from_secs(30));
}

/// `tidemark-loadgen` speaks HTTPS with basic auth from the URL (for the
/// CPU figure of TLS + auth): a write user sends everything, a read user
/// is refused and the tool exits 1.
#[test]
fn web_config_loadgen_writes_over_tls_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (port, _addr, _file, mut tm) = start_on(dir.path(), &tls_web(""));
    wait_ready_tls(&mut tm, port, &pki.ca);
    let run = |user: &str| {
        Command::new(tidemark_testkit::workspace_bin("tidemark-loadgen"))
            .env("SSL_CERT_FILE", &pki.ca)
            .arg(format!(
                "--url=https://{user}@127.0.0.1:{port}/api/v1/write"
            ))
            .args([
                "--targets=2",
                "--series-per-target=50",
                "--scrapes=4",
                "--shards=2",
                "--no-progress",
            ])
            .output()
            .unwrap()
    };
    let ok = run("agent:agentpw");
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let ca = pki.ca.display().to_string();
    let url = format!(
        "https://127.0.0.1:{port}/api/v1/query?query={}",
        http::encode("count(count by (instance) ({job=\"node\"}))")
    );
    let (_, code, body) = curl(&["--cacert", &ca, "-u", "grafana:grafanapw", &url]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"2\""), "{body}");
    let refused = run("grafana:grafanapw");
    assert!(!refused.status.success());
    tm.terminate(Duration::from_secs(30));
}

/// The query role reaches a node that serves TLS, asks for a verified
/// client certificate and for basic auth (`--endpoint.tls-ca-file`,
/// `--endpoint.tls-cert-file`/`-key-file`, `--endpoint.basic-auth-*`),
/// also by a server name other than the address (`--endpoint.tls-server-name`);
/// without the client certificate, or with a CA that did not sign the
/// node's certificate, the endpoint is unreachable and the answer says so.
#[test]
fn web_config_query_role_reaches_a_tls_node_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = pki(dir.path());
    let (port, mut tm, [ca, cert, key]) = start_mtls_node(dir.path(), &certs);
    let base = format!("https://127.0.0.1:{port}");
    let body = dir.path().join("write.bin");
    std::fs::write(&body, write_body("over_tls")).unwrap();
    let (_, code, out) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-u",
        "root:rootpw",
        "-H",
        "Content-Type: application/x-protobuf;proto=prometheus.WriteRequest",
        "-H",
        "Content-Encoding: snappy",
        "--data-binary",
        &format!("@{}", body.display()),
        &format!("{base}/api/v1/write"),
    ]);
    assert_eq!(code, 204, "{out}");
    let password = dir.path().join("password");
    std::fs::write(&password, "rootpw\n").unwrap();

    let query = |extra: &[String]| -> (Proc, String) {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(common::proc::tidemark_bin())
            .args(["query", "--listen", &addr, "--log-level", "warn"])
            .arg(format!("--endpoint=127.0.0.1:{port}"))
            .args([
                "--endpoint.basic-auth-username=root".to_string(),
                format!("--endpoint.basic-auth-password-file={}", password.display()),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut p = Proc(child, "query");
        common::proc::wait_ready(&mut p, &addr, Duration::from_secs(30));
        (p, addr)
    };
    let series = |addr: &str| -> (u16, String) {
        let r = get_plain(addr, "/api/v1/query?query=over_tls", None);
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };
    let tls = |ca: &Path, client: bool| -> Vec<String> {
        let mut v = vec![format!("--endpoint.tls-ca-file={}", ca.display())];
        if client {
            v.push(format!(
                "--endpoint.tls-cert-file={}",
                certs.client_cert.display()
            ));
            v.push(format!(
                "--endpoint.tls-key-file={}",
                certs.client_key.display()
            ));
        }
        v
    };

    // Verified, with a client certificate: the node's series.
    let (mut q, addr) = query(&tls(&certs.ca, true));
    let (status, body) = series(&addr);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"__name__\":\"over_tls\""), "{body}");
    q.terminate(Duration::from_secs(30));
    // By name: the certificate lists localhost, the address is an IP.
    let mut by_name = tls(&certs.ca, true);
    by_name.push("--endpoint.tls-server-name=localhost".into());
    let (mut q, addr) = query(&by_name);
    assert_eq!(series(&addr).0, 200);
    q.terminate(Duration::from_secs(30));
    // A name the certificate does not list: refused.
    let mut wrong = tls(&certs.ca, true);
    wrong.push("--endpoint.tls-server-name=elsewhere.example".into());
    let (mut q, addr) = query(&wrong);
    let (status, body) = series(&addr);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&format!("127.0.0.1:{port}")), "{body}");
    q.terminate(Duration::from_secs(30));
    // No client certificate: the node fails the handshake.
    let (mut q, addr) = query(&tls(&certs.ca, false));
    assert_eq!(series(&addr).0, 503);
    q.terminate(Duration::from_secs(30));
    // A CA that did not sign the node's certificate.
    let other = tempfile::tempdir().unwrap();
    let other_pki = pki(other.path());
    let (mut q, addr) = query(&tls(&other_pki.ca, true));
    assert_eq!(series(&addr).0, 503);
    q.terminate(Duration::from_secs(30));
    // Plain HTTP to a TLS node: no answer it can use.
    let (mut q, addr) = query(&[]);
    assert_eq!(series(&addr).0, 503);
    q.terminate(Duration::from_secs(30));
    tm.terminate(Duration::from_secs(30));
}
