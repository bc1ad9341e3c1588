//! The optional HTTP listener: Prometheus metrics and the live status page. (Being written.)

use crate::supervisor::Supervisor;
use hivehub_home::Home;
use std::net::SocketAddr;

/// Serves `/metrics` and the status page on `addr` until the process ends; returns the bound
/// address.
pub async fn serve(addr: SocketAddr, sup: Supervisor, home: Home) -> std::io::Result<SocketAddr> {
    let _ = (sup, home);
    Ok(addr)
}
