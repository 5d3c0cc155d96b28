//! `tidemark-histcompare` at a tiny size against Debian's Prometheus and
//! the `tidemark` binary: both take the remote-written native histograms,
//! every figure is printed, and Tidemark's `histogram_count(rate(...))`
//! answers equal Prometheus's.
//!
//! Needs `prometheus` (scripts/test installs it). Set `TIDEMARK_SKIP_E2E=1`
//! to skip on a machine without it.

mod common;

use std::process::Command;

use common::proc::find_bin;

#[test]
fn histcompare_tiny_run_prints_every_figure_and_equal_answers() {
    if find_bin("prometheus").is_none() {
        assert!(
            std::env::var("TIDEMARK_SKIP_E2E").as_deref() == Ok("1"),
            "prometheus is needed (scripts/test installs it)"
        );
        eprintln!("skipped: prometheus not installed");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark-histcompare"))
        .args(["--series=20", "--samples=30", "--runs=1", "--tidemark-bin"])
        .arg(common::proc::tidemark_bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "ingest CPU per histogram sample",
        "bytes per histogram sample",
        "histogram_quantile(0.9, rate(request_duration_seconds[5m]))",
        "histogram_count(rate(request_duration_seconds[5m]))",
    ] {
        assert!(stdout.contains(row), "no row {row:?}:\n{stdout}");
    }
    assert!(
        stdout.contains("answers equal to Prometheus's (1e-9 relative): yes"),
        "{stdout}"
    );
}
