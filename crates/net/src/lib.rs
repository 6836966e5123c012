//! What every TCP server of Hameau (SMTP, IMAP, HTTPS) runs on.
//!
//! - [`Connection`]: plain or TLS (rustls), implicit TLS or the STARTTLS upgrade, each
//!   handshake within a timeout, and writes within a timeout.
//! - [`accept_loop`]: a budget of connections in all (accepting waits past it), a count per
//!   client address (the handler is told when the address is over its limit, to refuse in
//!   its protocol's words), accept errors survived with a growing pause, and on shutdown:
//!   no new connections, then wait for the live ones.
//!
//! A service with its own accept loop can still count per address: keep
//! [`Gate::enter`]'s [`AddressSlot`] alive as long as the connection, and refuse it when
//! [`AddressSlot::over_limit`].

pub mod certs;
mod connection;

pub use certs::{Certificates, Http01Tokens};
pub use connection::{Connection, TlsInfo};

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

/// The connection limits shared by one or more listeners of a service (IMAP's 143 and 993
/// share one, as do all of SMTP's listeners).
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_address_max: usize,
}

impl Gate {
    pub fn new(connections_max: usize, per_ip_max: usize) -> Arc<Gate> {
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(connections_max)),
            per_address: Arc::default(),
            per_address_max: per_ip_max,
        })
    }

    /// Counts one more connection from `ip` (under its [`address_key`]) until the slot is
    /// dropped. The map holds one entry per address with a live slot, so it is bounded by
    /// the connections alive.
    pub fn enter(&self, ip: IpAddr) -> AddressSlot {
        let key = address_key(ip);
        let mut counts = self.per_address.lock().expect("per-address lock");
        let count = counts.entry(key).or_insert(0);
        *count += 1;
        AddressSlot { map: self.per_address.clone(), key, over_limit: *count > self.per_address_max }
    }
}

/// The key a client address is counted under. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, how a dual-stack listener sees an IPv4 client) counts as its IPv4
/// address, so a client is counted once whichever listener it reaches. Any other IPv6
/// address counts as its /64: a subscriber is given a whole /64 at least (RFC 6177), so
/// one host could otherwise take every slot by using a new address for each connection.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

/// One connection counted against its client's address while alive (see [`Gate::enter`]).
#[derive(Debug)]
pub struct AddressSlot {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
    over_limit: bool,
}

impl AddressSlot {
    /// The address had more connections than the limit, this one included: refuse it.
    pub fn over_limit(&self) -> bool {
        self.over_limit
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.map.lock().expect("per-address lock");
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A connection as the handler receives it.
#[derive(Debug)]
pub struct Accepted {
    pub tcp: TcpStream,
    pub peer: SocketAddr,
    /// The client's address has more connections than the limit: refuse this one.
    pub over_limit: bool,
}

/// Accepts on `listener` until `shutdown` turns true, running `handle` for each connection
/// on its own task; then waits for those tasks to end.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    gate: Arc<Gate>,
    mut shutdown: watch::Receiver<bool>,
    service: &'static str,
    handle: F,
) where
    F: Fn(Accepted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut accept_errors = 0u32;
    loop {
        let permit = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            permit = gate.permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => { accept_errors = 0; accepted }
                Err(e) => {
                    // Out of file descriptors and the like: pause, growing to 640 ms.
                    accept_errors = (accept_errors + 1).min(6);
                    tracing::warn!(service, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10 << accept_errors)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let guard = gate.enter(peer.ip());
        let over_limit = guard.over_limit();
        let connection = handle(Accepted { tcp, peer, over_limit });
        let done = done_tx.clone();
        tokio::spawn(async move {
            connection.await;
            drop((guard, permit, done));
        });
    }
    drop(done_tx);
    let _ = done_rx.recv().await;
}

/// Resolves once `shutdown` is true.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests;
