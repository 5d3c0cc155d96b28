//! `tidemark query`: the HTTP API over a [`Fanout`] instead of a local
//! database. Ready once every `--endpoint` has been resolved once (an
//! endpoint that is down then makes queries fail or warn, it does not keep
//! the role unready); re-resolves and re-reads endpoint info in the
//! background until SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::ApiOptions;
use crate::query::{Fanout, FanoutOptions};
use crate::server::{run_until_signal, start_role};

/// The `Authorization` value for endpoints from the credential flags
/// (files read once, a trailing newline dropped).
fn endpoint_authorization(args: &crate::config::QueryArgs) -> anyhow::Result<Option<String>> {
    use base64::Engine as _;
    let read = |p: &std::path::Path| -> anyhow::Result<String> {
        let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(s.trim_end_matches(['\n', '\r']).to_string())
    };
    if let Some(p) = &args.endpoint_bearer_token_file {
        return Ok(Some(format!("Bearer {}", read(p)?)));
    }
    match (&args.endpoint_username, &args.endpoint_password_file) {
        (Some(user), Some(p)) => {
            let pair = format!("{user}:{}", read(p)?);
            Ok(Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )))
        }
        _ => Ok(None),
    }
}

/// HTTPS to the endpoints from the `--endpoint.tls*` flags, or `None`
/// (plain HTTP).
fn endpoint_tls(
    args: &crate::config::QueryArgs,
) -> anyhow::Result<Option<crate::query::EndpointTls>> {
    let on = args.endpoint_tls
        || args.endpoint_tls_ca_file.is_some()
        || args.endpoint_tls_cert_file.is_some()
        || args.endpoint_tls_server_name.is_some();
    if !on {
        return Ok(None);
    }
    let client = args
        .endpoint_tls_cert_file
        .as_deref()
        .zip(args.endpoint_tls_key_file.as_deref());
    let config = crate::server::tls::client_config(args.endpoint_tls_ca_file.as_deref(), client)
        .context("--endpoint.tls*")?;
    let server_name = match &args.endpoint_tls_server_name {
        Some(n) => Some(
            rustls::pki_types::ServerName::try_from(n.clone()).with_context(|| {
                format!("--endpoint.tls-server-name={n}: not a DNS name or IP address")
            })?,
        ),
        None => None,
    };
    Ok(Some(crate::query::EndpointTls {
        config: Arc::new(config),
        server_name,
    }))
}

/// Runs the query role until SIGTERM/SIGINT.
///
/// # Errors
/// A flag that cannot be used, or the listener cannot bind.
pub async fn run_query(args: crate::config::QueryArgs) -> anyhow::Result<()> {
    let authorization = endpoint_authorization(&args)?;
    let tls = endpoint_tls(&args)?;
    let config = args.config;
    if !config.rule_files.is_empty() {
        anyhow::bail!(
            "--rule-files is not supported by tidemark query; evaluate rules on an ingesting node"
        );
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, endpoints = ?args.endpoints, "starting tidemark query");
    let mut api_options = ApiOptions::from(&config);
    api_options.read_only = true;
    api_options.query_role = true;
    api_options.enable_admin_api = false;
    let role = start_role(&config, listener, api_options)?;
    let state = role.state.clone();
    let metrics = state
        .query_metrics()
        .context("query metrics are registered in the query role")?;
    let fanout = Fanout::new(
        FanoutOptions {
            endpoints: args.endpoints,
            replica_labels: args.replica_labels,
            partial_response: args.partial_response,
            endpoint_timeout: args.endpoint_timeout,
            refresh_interval: args
                .refresh_interval
                .max(std::time::Duration::from_millis(100)),
            authorization,
            tls,
        },
        metrics,
        tokio::runtime::Handle::current(),
    )
    .context("--endpoint.basic-auth-* / --endpoint.bearer-token-file: not a valid header value")?;
    fanout.refresh().await;
    tracing::info!(endpoints = ?fanout.endpoints(), "endpoints resolved; ready");
    state.set_ready_source(Arc::new(fanout.clone()));
    let refresher = tokio::spawn(fanout.refresh_loop(role.stop_rx.clone()));
    run_until_signal(role, ("endpoint refresh", refresher)).await;
    tracing::info!("stopped cleanly");
    Ok(())
}
