//! TCP transport: one socket per connection, framed by `codec::FrameCodec`; handshake, events,
//! limits and redial live in `conn` and are shared with the in-memory transport.

use super::conn::{self, DialFn, Setup};
use super::DEFAULT_MAX_FRAME_BYTES;
use super::{Backoff, BoxFuture, Link, NetEvent, Transport, TransportError};
use crate::messages::Hello;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

/// The kernel's accept queue is sized for the connection limit (the kernel still caps it at
/// `net.core.somaxconn`). Tokio's default of 1,024 overflowed when 10k agents redialled a new
/// leader at once: the kernel dropped their handshakes and each dropped agent waited a 1 s (then
/// 3 s, ...) SYN retransmission before it was even accepted.
const MIN_LISTEN_BACKLOG: usize = 1_024;
const MAX_LISTEN_BACKLOG: usize = 65_535;

fn listen_backlog(max_connections: usize) -> u32 {
    // Clamped to at most 65,535, so the cast cannot truncate.
    max_connections.clamp(MIN_LISTEN_BACKLOG, MAX_LISTEN_BACKLOG) as u32
}

/// `TcpListener::bind` with an explicit accept-queue length (address reuse as tokio sets it).
async fn bind_listener(addr: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await? {
        let socket = if sa.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(sa).and_then(|()| socket.listen(backlog)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "address resolves to nothing",
        )
    }))
}

#[derive(Debug, Clone, Copy)]
pub struct TcpTransport {
    /// Frames above this many bytes (body) are refused, in both directions.
    pub max_frame_bytes: usize,
    /// Connections one listener serves at once (each takes a file descriptor).
    pub max_connections: usize,
}

impl TcpTransport {
    pub fn new(max_frame_bytes: usize) -> Self {
        TcpTransport {
            max_frame_bytes,
            max_connections: conn::MAX_CONNECTIONS_PER_LISTENER,
        }
    }

    /// The same transport with another per-listener connection limit.
    pub fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections.max(1);
        self
    }
}

impl Default for TcpTransport {
    fn default() -> Self {
        TcpTransport::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Transport for TcpTransport {
    fn listen(
        &self,
        addr: &str,
        local: Hello,
        sink: actix::Recipient<NetEvent>,
    ) -> BoxFuture<Result<String, TransportError>> {
        let addr = addr.to_string();
        let setup = Setup {
            local,
            max_frame_bytes: self.max_frame_bytes,
            sink,
        };
        let max_connections = self.max_connections;
        Box::pin(async move {
            let listener = bind_listener(&addr, listen_backlog(max_connections))
                .await
                .map_err(|e| TransportError::Listen {
                    addr: addr.clone(),
                    why: e.to_string(),
                })?;
            let bound = listener
                .local_addr()
                .map_err(|e| TransportError::Listen {
                    addr: addr.clone(),
                    why: e.to_string(),
                })?
                .to_string();
            info!(addr = %bound, "listening (tcp)");
            actix::spawn(accept_loop(listener, bound.clone(), setup, max_connections));
            Ok(bound)
        })
    }

    fn connect(
        &self,
        addrs: Vec<String>,
        local: Hello,
        backoff: Backoff,
        sink: actix::Recipient<NetEvent>,
    ) -> Box<dyn Link> {
        let setup = Setup {
            local,
            max_frame_bytes: self.max_frame_bytes,
            sink,
        };
        let dial: DialFn<TcpStream> = Box::new(|addr| Box::pin(dial(addr)));
        conn::start_link(dial, addrs, backoff, setup)
    }
}

async fn dial(addr: String) -> Result<(TcpStream, String), String> {
    let stream = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
    // Small control messages must not wait for Nagle's algorithm.
    if let Err(e) = stream.set_nodelay(true) {
        warn!(addr, "cannot set TCP_NODELAY: {e}");
    }
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or(addr);
    Ok((stream, peer))
}

/// Accepts until the owner is gone. Errors on one connection never end the loop.
async fn accept_loop(listener: TcpListener, bound: String, setup: Setup, max_connections: usize) {
    let limiter: Arc<Semaphore> = conn::connection_limiter(max_connections);
    let owner_check = Duration::from_millis(conn::OWNER_CHECK_MS);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = tokio::time::sleep(owner_check) => {
                if setup.sink.connected() {
                    continue;
                }
                break;
            }
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(addr = %bound, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                continue;
            }
        };
        if !setup.sink.connected() {
            break;
        }
        let peer = peer.to_string();
        if let Err(e) = stream.set_nodelay(true) {
            warn!(peer = %peer, "cannot set TCP_NODELAY: {e}");
        }
        if let Some(permit) = conn::admit(&limiter, max_connections, &peer) {
            conn::spawn_accepted(stream, peer, setup.clone(), permit);
        }
    }
    info!(addr = %bound, "listener owner is gone; stopped listening");
}
