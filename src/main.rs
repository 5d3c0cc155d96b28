//! The `tidemark` binary: parse flags, set up logging, run the server, and
//! map failure to a non-zero exit code.

use clap::Parser;
use tidemark::config::Config;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: ingest allocates and frees
/// small buffers per series per request (decoded protobuf, label sets,
/// sample vectors), where glibc's malloc spent about a quarter of the
/// server's CPU (perf, `scripts/compare` workload).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|e| {
        eprintln!(
            "invalid --log-level {:?}: {e}; using info",
            config.log_level
        );
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tidemark::server::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "tidemark failed");
            std::process::ExitCode::FAILURE
        }
    }
}
