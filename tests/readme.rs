//! The README stays true:
//! - its configuration reference is exactly what the clap definitions
//!   generate (`TIDEMARK_UPDATE_README=1` or `scripts/update-readme`
//!   rewrites it);
//! - its API compatibility table names every route the router serves;
//! - its quick start, run step by step by `scripts/readme-quickstart`,
//!   ends with node_exporter and Tidemark data queryable in Tidemark.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BEGIN: &str = "<!-- config-reference:start";
const END: &str = "<!-- config-reference:end -->";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn readme_config_reference_matches_clap() {
    check_generated(BEGIN, END, &tidemark::config::reference_markdown());
    // The "Security" section's table of the `--web.*` flags.
    check_generated(
        "<!-- security-flags:start",
        "<!-- security-flags:end -->",
        &tidemark::config::reference_markdown_web(),
    );
}

/// The README's text between the `begin` marker line and `end` is `want`
/// (rewritten with `TIDEMARK_UPDATE_README=1`).
fn check_generated(begin: &str, end_marker: &str, want: &str) {
    let path = repo().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(begin)
        .unwrap_or_else(|| panic!("README has the {begin} marker"));
    let body_start = start + readme[start..].find('\n').expect("marker line ends") + 1;
    let end = readme
        .find(end_marker)
        .unwrap_or_else(|| panic!("README has the {end_marker} marker"));
    assert!(body_start <= end, "markers out of order");
    if readme[body_start..end] == *want {
        return;
    }
    if std::env::var("TIDEMARK_UPDATE_README").as_deref() == Ok("1") {
        let updated = format!("{}{want}{}", &readme[..body_start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        eprintln!("README.md generated table after {begin} rewritten");
        return;
    }
    panic!(
        "README.md's generated table after {begin} is stale (a flag changed in src/config.rs); \
         run scripts/update-readme. Expected:\n{want}"
    );
}

#[test]
fn readme_api_table_lists_every_route() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let api = std::fs::read_to_string(repo().join("src/api.rs")).unwrap();
    let routes: Vec<&str> = api
        .match_indices(".route(")
        .filter_map(|(i, _)| {
            let rest = api[i..].split_once('"')?.1;
            rest.split_once('"').map(|(path, _)| path)
        })
        .collect();
    assert!(routes.len() > 20, "routes found in src/api.rs: {routes:?}");
    let table = &readme[readme.find("## API compatibility").expect("API section")..];
    for r in routes {
        assert!(
            table.contains(&format!("| `{r}` |")),
            "README's API compatibility table lacks {r}"
        );
    }
}

#[test]
fn readme_quickstart_runs_as_written() {
    if common::proc::find_bin("prometheus").is_none() {
        if std::env::var("TIDEMARK_SKIP_E2E").as_deref() == Ok("1") {
            eprintln!("skipping: prometheus not installed");
            return;
        }
        panic!("prometheus must be installed (scripts/test does it)");
    }
    // Output to a file: the background processes inherit it and log a
    // lot, which could fill a pipe nobody reads while we wait.
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("quickstart.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(repo().join("scripts/readme-quickstart"))
        .env("TIDEMARK_BIN", env!("CARGO_BIN_EXE_tidemark"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // The script's own waits are bounded (4 tries of a 15 s check); this
    // guards against a hung command.
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scripts/readme-quickstart did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        status.success(),
        "the README quick start failed ({status}):\n{out}"
    );
    assert!(out.contains("== quick start works"), "{out}");
    for line in out
        .lines()
        .filter(|l| l.starts_with("==") || l.starts_with("--"))
    {
        eprintln!("{line}");
    }
}
