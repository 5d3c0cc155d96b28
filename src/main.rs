//! The `tidemark` binary: parse flags, set up logging, run the server, and
//! map failure to a non-zero exit code.

use clap::Parser;
use tidemark::config::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: ingest allocates and frees
/// small buffers per series per request (decoded protobuf, label sets,
/// sample vectors), where glibc's malloc spent about a quarter of the
/// server's CPU (perf, `scripts/compare` workload).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The mimalloc option (read from the environment when the allocator
/// starts, before `main`) that keeps freed memory from counting as
/// resident: with eager arena commit (the default on Linux), memory
/// mimalloc purges is only marked free (MADV_FREE) and stays in RSS until
/// the kernel needs it. Measured on the compare ingest: peak RSS 210 ->
/// 146 MiB for ~5% of the CPU that mimalloc saved over glibc.
const ALLOCATOR_ENV: (&str, &str) = ("MIMALLOC_ARENA_EAGER_COMMIT", "0");

/// Re-executes the binary with [`ALLOCATOR_ENV`] set when it is not: the
/// allocator reads it before `main` runs, so setting it here would come
/// too late for the arena it has already reserved. Same PID, same
/// arguments; an operator's own setting is kept. If the exec fails the
/// server simply runs with the default.
#[cfg(unix)]
fn reexec_with_allocator_env() {
    use std::os::unix::process::CommandExt;
    let (name, value) = ALLOCATOR_ENV;
    if std::env::var_os(name).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(name, value)
        .exec();
    eprintln!("could not re-execute with {name}={value}: {err}; continuing");
}

fn main() -> std::process::ExitCode {
    #[cfg(unix)]
    reexec_with_allocator_env();
    let cli = Cli::parse();
    let log_level = match &cli.command {
        Some(Command::Store(s)) => s.config.log_level.clone(),
        Some(Command::Compact(c)) => c.log_level.clone(),
        Some(Command::Query(q)) => q.config.log_level.clone(),
        None => cli.config.log_level.clone(),
    };
    let filter = EnvFilter::try_new(&log_level).unwrap_or_else(|e| {
        eprintln!("invalid --log-level {:?}: {e}; using info", log_level);
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
    let run = async move {
        match cli.command {
            Some(Command::Store(args)) => tidemark::server::run_store(args).await,
            Some(Command::Compact(args)) => tidemark::server::run_compact(args).await,
            Some(Command::Query(args)) => tidemark::server::run_query(args).await,
            None => tidemark::server::run(cli.config).await,
        }
    };
    match runtime.block_on(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "tidemark failed");
            std::process::ExitCode::FAILURE
        }
    }
}
