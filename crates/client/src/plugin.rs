//! The plugin runtime: everything a plugin's `main` needs.
//!
//! ```no_run
//! # async fn example() -> Result<(), hivehub_client::ClientError> {
//! hivehub_client::plugin::run(|client| async move {
//!     client.serve("ping", |_req| async { Ok(serde_json::json!("pong")) }).await?;
//!     Ok(())
//! }).await
//! # }
//! ```
//!
//! [`run`] reads the options from the environment the launcher sets, connects (retrying for a
//! while if the hub is still starting), runs the setup, tells the launcher it is ready (the
//! systemd notify protocol: `READY=1` on `$NOTIFY_SOCKET`, a no-op without it), then waits for
//! SIGTERM or SIGINT and disconnects cleanly.

use crate::{ClientError, ClientOptions, HubClient};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// How long [`run`] keeps trying to make the first connection.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// Runs a plugin with options from the environment. See the module documentation.
pub async fn run<F, Fut>(setup: F) -> Result<(), ClientError>
where
    F: FnOnce(HubClient) -> Fut,
    Fut: Future<Output = Result<(), ClientError>>,
{
    run_with(ClientOptions::from_env()?, setup).await
}

/// Connects with retries: a refused login is final, an unreachable hub is retried until
/// [`CONNECT_PATIENCE`] has passed.
pub async fn connect_patiently(opts: ClientOptions) -> Result<HubClient, ClientError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match HubClient::connect(opts.clone()).await {
            Ok(c) => return Ok(c),
            Err(e @ ClientError::Unreachable { .. }) if start.elapsed() < CONNECT_PATIENCE => {
                tracing::warn!("{e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Like [`run`], with explicit options.
pub async fn run_with<F, Fut>(opts: ClientOptions, setup: F) -> Result<(), ClientError>
where
    F: FnOnce(HubClient) -> Fut,
    Fut: Future<Output = Result<(), ClientError>>,
{
    // Install the handlers before connecting so an early SIGTERM still stops us cleanly.
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| ClientError::Config(format!("cannot handle SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| ClientError::Config(format!("cannot handle SIGINT: {e}")))?;
    let client = tokio::select! {
        c = connect_patiently(opts) => c?,
        _ = term.recv() => return Ok(()),
        _ = int.recv() => return Ok(()),
    };
    tracing::info!(id = client.client_id(), url = %client.server_url(), "connected to the hub");
    setup(client.clone()).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; stopping"),
        _ = int.recv() => tracing::info!("SIGINT received; stopping"),
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    client.disconnect().await;
    Ok(())
}
