//! The accept loop of Hameau's TCP services (SMTP, IMAP): a budget of connections in all
//! (accepting waits past it), a count per client address (the handler is told when the
//! address is over its limit, to refuse in its protocol's words), accept errors survived
//! with a growing pause, and on shutdown: no new connections, then wait for the live ones.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

/// The connection limits shared by one or more listeners of a service (IMAP's 143 and 993
/// share one).
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_ip_max: usize,
}

impl Gate {
    pub fn new(connections_max: usize, per_ip_max: usize) -> Arc<Gate> {
        Arc::new(Gate { permits: Arc::new(Semaphore::new(connections_max)), per_ip: Arc::default(), per_ip_max })
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
        let guard = PerIp::enter(&gate.per_ip, peer.ip());
        let over_limit = guard.count > gate.per_ip_max;
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

/// Counts a client address's connections while alive.
struct PerIp {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
    count: usize,
}

impl PerIp {
    fn enter(map: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> PerIp {
        let mut counts = map.lock().expect("per-ip lock");
        let count = counts.entry(ip).or_insert(0);
        *count += 1;
        PerIp { map: map.clone(), ip, count: *count }
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        let mut counts = self.map.lock().expect("per-ip lock");
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn limits_per_address_and_drains_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = watch::channel(false);
        let gate = Gate::new(10, 2);
        let server = tokio::spawn(accept_loop(listener, gate, shutdown, "test", |accepted: Accepted| async move {
            let mut tcp = accepted.tcp;
            let word: &[u8] = if accepted.over_limit { b"full\n" } else { b"hello\n" };
            let _ = tcp.write_all(word).await;
            let mut buf = [0u8; 1];
            let _ = tcp.read(&mut buf).await;
        }));
        let mut clients = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..3 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 6];
            let n = client.read(&mut buf).await.unwrap();
            answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            clients.push(client);
        }
        assert_eq!(answers, ["hello\n", "hello\n", "full\n"]);
        stop.send(true).unwrap();
        // The loop waits for the live connections; closing them ends it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!server.is_finished());
        drop(clients);
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }
}
