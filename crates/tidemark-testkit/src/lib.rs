//! What tests and the bench tools need to start real processes on
//! 127.0.0.1: a free port, an installed binary (Debian's Prometheus,
//! VictoriaMetrics, node_exporter...), and a binary of this workspace built
//! beside the running test.
//!
//! Owns no process lifetimes (each caller kills what it started) and
//! depends on std only, so the server's tests can use it without pulling in
//! the bench tools.

#![deny(missing_docs)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// A port on 127.0.0.1 that was free a moment ago (bound, then released).
///
/// # Panics
/// When no port can be bound on 127.0.0.1 at all (the machine has no
/// loopback), which no test can work around.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a port on 127.0.0.1")
        .port()
}

/// The path of an installed binary (`/usr/bin`, `/usr/local/bin`,
/// `/usr/sbin`), if any.
pub fn find_bin(bin: &str) -> Option<String> {
    ["/usr/bin/", "/usr/local/bin/", "/usr/sbin/"]
        .iter()
        .map(|d| format!("{d}{bin}"))
        .find(|p| Path::new(p).exists())
}

/// A binary of another package of this workspace, from the target directory
/// the running test executable was built in (`target/<profile>/deps/x-hash`
/// → `target/<profile>/<bin>`). Cargo only hands a test the binaries of its
/// own package (`CARGO_BIN_EXE_*`); `cargo test --workspace` builds every
/// package's binaries before it runs any test.
///
/// # Panics
/// When the binary has not been built, with the command that builds it:
/// a test that needs it must fail, never skip.
pub fn workspace_bin(bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test");
    let profile_dir = exe
        .parent()
        .and_then(|deps| {
            if deps.file_name().is_some_and(|n| n == "deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .expect("the test executable lives in a target directory");
    let path = profile_dir.join(bin);
    assert!(
        path.exists(),
        "{} is not built; run the tests of the whole workspace \
         (`cargo test --workspace`) or build it first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_can_be_bound_again() {
        let port = free_port();
        assert!(port > 0);
        TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }

    #[test]
    fn find_bin_finds_sh_and_not_nonsense() {
        assert!(find_bin("sh").is_some());
        assert!(find_bin("no-such-binary-tidemark").is_none());
    }
}
