//! A tiny HTTPS server on a loopback port that answers each request with the bytes set for
//! its `Host`, and counts the requests per host: the MTA-STS policy hosts
//! (`https://mta-sts.DOMAIN/.well-known/mta-sts.txt`, RFC 8461 §3.3) of the outbound
//! end-to-end tests, one server for every domain. It reads only the request's head (at
//! most 16 KiB), answers, and closes the connection; one thread per connection.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server; stopped when dropped.
pub struct HttpsServer {
    pub port: u16,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// The whole response (status line, header, body) per host name, lower case.
    answers: Mutex<HashMap<String, Vec<u8>>>,
    /// Requests read per host name.
    requests: Mutex<HashMap<String, usize>>,
    stop: AtomicBool,
}

/// The most of a request's head read; a longer one is dropped unanswered.
const HEAD_BYTES_MAX: usize = 16 * 1024;

impl HttpsServer {
    /// Serves with `config` (its certificate should name every host asked for) on a free
    /// port of 127.0.0.1. A host without an answer gets `404 Not Found`.
    pub fn start(config: Arc<rustls::ServerConfig>) -> HttpsServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(State::default());
        let serving = state.clone();
        std::thread::spawn(move || {
            while !serving.stop.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let (config, state) = (config.clone(), serving.clone());
                std::thread::spawn(move || serve(stream, config, &state));
            }
        });
        HttpsServer { port, state }
    }

    /// From now on, requests for `host` get `response`, sent as it is.
    pub fn answer(&self, host: &str, response: Vec<u8>) {
        self.state.answers.lock().unwrap().insert(host.to_ascii_lowercase(), response);
    }

    /// The requests read so far for `host`.
    pub fn requests(&self, host: &str) -> usize {
        self.state.requests.lock().unwrap().get(&host.to_ascii_lowercase()).copied().unwrap_or(0)
    }

    /// A `200 OK` response with a `text/plain` body (what an MTA-STS policy is served as).
    pub fn text(body: &str) -> Vec<u8> {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .into_bytes()
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}

/// One connection: the TLS handshake, the request's head, the answer for its host.
fn serve(stream: TcpStream, config: Arc<rustls::ServerConfig>, state: &State) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(connection) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > HEAD_BYTES_MAX {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let host = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("host").then(|| value.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    let host = host.split(':').next().unwrap_or("").to_string();
    *state.requests.lock().unwrap().entry(host.clone()).or_default() += 1;
    let answer = state.answers.lock().unwrap().get(&host).cloned();
    let answer =
        answer.unwrap_or_else(|| b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec());
    let _ = tls.write_all(&answer);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
