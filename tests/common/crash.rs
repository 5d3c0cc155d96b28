//! Crash tests' child processes: the test binary runs itself filtered to
//! one "child" test, whose crash hook aborts the process at the step named
//! in [`CRASH_AT`] (a process death with no clean-up, as `kill -9`).

use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// The step the child aborts at.
pub(crate) const CRASH_AT: &str = "TIDEMARK_TEST_CRASH_AT";

/// A crash hook (`fn(&str)`): aborts at the step named in [`CRASH_AT`].
pub(crate) fn abort_at(step: &str) {
    if std::env::var(CRASH_AT).as_deref() == Ok(step) {
        println!("crashing at {step}");
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
