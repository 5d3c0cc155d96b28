//! Crash tests' child processes: the test binary runs itself filtered to
//! one "child" test, whose crash hook aborts the process at the step named
//! in [`CRASH_AT`] (a process death with no clean-up, as `kill -9`).

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The step the child aborts at.
pub(crate) const CRASH_AT: &str = "TIDEMARK_TEST_CRASH_AT";

/// Times the hook saw the step it aborts at.
static HITS: AtomicUsize = AtomicUsize::new(0);

/// A crash hook (`fn(&str)`): aborts at the step named in [`CRASH_AT`],
/// `<step>` or `<step>#<n>` (its n-th occurrence).
pub(crate) fn abort_at(step: &str) {
    let Ok(at) = std::env::var(CRASH_AT) else {
        return;
    };
    let (want, nth) = at.split_once('#').unwrap_or((at.as_str(), "1"));
    if step == want && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth.parse().unwrap_or(1) {
        println!("crashing at {at}");
        std::process::abort();
    }
}

/// Runs the test `child` of this test binary with `env` and [`CRASH_AT`]
/// set to `step`, and checks it crashed there.
pub(crate) fn run_child(child: &str, env: &[(&str, &OsStr)], step: &str) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(CRASH_AT, step)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("crashing at {step}")),
        "{step}: child never got there: {stdout}"
    );
    assert!(!out.status.success());
}
