//! hivehub patch: a cap on the connections of a listener that have not logged in yet, in all
//! and per IP address.
//!
//! A connection holds a [`Permit`] from its accept until its CONNECT has been read and
//! answered; one over a cap is closed at once. Loopback addresses are held to the total only:
//! they are this host's own processes, which all share them (a launcher starting hundreds of
//! plugins connects them at once from 127.0.0.1). Without it, anyone who can reach a listener could
//! open connections until the server ran out of file descriptors, each held until the handshake
//! timeout, and stall every other client's connect.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// The caps of one listener; 0 means no cap.
pub(crate) struct Pending {
    inner: Arc<Inner>,
}

struct Inner {
    max: usize,
    max_per_ip: usize,
    /// Connections pending in all, and per address.
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One pending connection; dropping it frees its place.
pub(crate) struct Permit {
    inner: Arc<Inner>,
    ip: IpAddr,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// `max` connections are pending.
    Listener(usize),
    /// `max_per_ip` connections from this address are pending.
    Address(usize),
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Full::Listener(n) => write!(f, "{n} connections are already logging in"),
            Full::Address(n) => write!(f, "{n} connections from this address are already logging in"),
        }
    }
}

impl Pending {
    pub(crate) fn new(max: usize, max_per_ip: usize) -> Self {
        Pending { inner: Arc::new(Inner { max, max_per_ip, counts: Mutex::new((0, HashMap::new())) }) }
    }

    /// A place for a connection from `ip`, or why there is none.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Permit, Full> {
        let mut counts = self.inner.counts.lock();
        let (total, per_ip) = &mut *counts;
        if self.inner.max > 0 && *total >= self.inner.max {
            return Err(Full::Listener(self.inner.max));
        }
        let mine = per_ip.entry(ip).or_insert(0);
        if self.inner.max_per_ip > 0 && *mine >= self.inner.max_per_ip && !ip.is_loopback() {
            return Err(Full::Address(self.inner.max_per_ip));
        }
        *mine += 1;
        *total += 1;
        Ok(Permit { inner: self.inner.clone(), ip })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.inner.counts.lock();
        let (total, per_ip) = &mut *counts;
        *total -= 1;
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address_and_frees_on_drop() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let p = Pending::new(4, 2);
        let a1 = p.admit(a).unwrap();
        let _a2 = p.admit(a).unwrap();
        assert_eq!(p.admit(a).err(), Some(Full::Address(2)));
        let _b1 = p.admit(b).unwrap();
        let _b2 = p.admit(b).unwrap();
        assert_eq!(p.admit(c).err(), Some(Full::Listener(4)));
        drop(a1);
        let _c1 = p.admit(c).unwrap();
        assert_eq!(p.admit(a).err(), Some(Full::Listener(4)));
        // Loopback addresses share the total only.
        let lo = Pending::new(3, 1);
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let held = [lo.admit(v4).unwrap(), lo.admit(v4).unwrap(), lo.admit(v6).unwrap()];
        assert_eq!(lo.admit(v4).err(), Some(Full::Listener(3)));
        drop(held);
        // No caps.
        let open = Pending::new(0, 0);
        let held: Vec<Permit> = (0..100).map(|_| open.admit(a).unwrap()).collect();
        drop(held);
        assert!(open.inner.counts.lock().1.is_empty());
    }
}
