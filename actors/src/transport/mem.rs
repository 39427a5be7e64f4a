//! In-memory transport: listeners are registered by address in a shared registry, and a
//! connection is a pair of in-memory byte pipes carrying exactly the frames TCP would carry.
//! Every message is therefore encoded and decoded by the same codec, with the same hello check,
//! frame limit, close semantics and redial as TCP — the actors cannot tell the difference.

use super::conn::{self, DialFn, Setup};
use super::DEFAULT_MAX_FRAME_BYTES;
use super::{Backoff, BoxFuture, Link, NetEvent, Transport, TransportError};
use crate::messages::Hello;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tracing::info;

/// Bytes buffered in each direction of an in-memory connection (like a socket buffer).
pub const MEM_PIPE_BYTES: usize = 64 * 1024;
/// Connections waiting to be accepted by one listener before new dials are refused.
pub const MEM_BACKLOG: usize = 128;
/// Longest address accepted.
pub const MAX_MEM_ADDR_LEN: usize = 256;
/// First number tried when `listen` is asked for port 0.
const FIRST_EPHEMERAL_PORT: u32 = 40_000;

/// A connection waiting to be accepted: the listener's end of the pipe and the client's name.
type Pending = (DuplexStream, String);

#[derive(Default)]
struct Registry {
    listeners: BTreeMap<String, mpsc::Sender<Pending>>,
    next_port: u32,
    next_client: u64,
}

/// In-process transport. Clones share one registry: listen on one clone, connect on another.
#[derive(Clone)]
pub struct MemTransport {
    registry: Arc<Mutex<Registry>>,
    /// Frames above this many bytes (body) are refused, in both directions.
    pub max_frame_bytes: usize,
}

impl Default for MemTransport {
    fn default() -> Self {
        MemTransport::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl std::fmt::Debug for MemTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTransport")
            .field("max_frame_bytes", &self.max_frame_bytes)
            .finish_non_exhaustive()
    }
}

impl MemTransport {
    pub fn new(max_frame_bytes: usize) -> Self {
        MemTransport {
            registry: Arc::new(Mutex::new(Registry::default())),
            max_frame_bytes,
        }
    }

    /// The same registry with another frame limit (a node configured differently).
    pub fn with_max_frame_bytes(&self, max_frame_bytes: usize) -> Self {
        MemTransport {
            registry: self.registry.clone(),
            max_frame_bytes,
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a raw byte stream to the listener at `addr`, as a plain TCP client socket would:
    /// for tests and tools that speak the frame protocol by hand (or not at all).
    pub fn connect_raw(&self, addr: &str) -> Result<DuplexStream, TransportError> {
        let (client, server) = tokio::io::duplex(MEM_PIPE_BYTES);
        let mut reg = self.registry();
        reg.next_client += 1;
        let name = format!("mem-client-{}", reg.next_client);
        let tx = match reg.listeners.get(addr) {
            Some(tx) if !tx.is_closed() => tx,
            _ => return Err(TransportError::NotConnected),
        };
        tx.try_send((server, name))
            .map_err(|_| TransportError::QueueFull)?;
        Ok(client)
    }

    /// Registers a listener at `addr`; `host:0` picks an unused `host:N`.
    fn register(&self, addr: &str) -> Result<(String, mpsc::Receiver<Pending>), TransportError> {
        if addr.is_empty() || addr.len() > MAX_MEM_ADDR_LEN {
            return Err(TransportError::BadAddress(addr.to_string()));
        }
        let mut reg = self.registry();
        let bound = match addr.strip_suffix(":0") {
            Some(host) => pick_port(&mut reg, host),
            None => addr.to_string(),
        };
        // A listener whose owner stopped leaves a closed sender behind: the address is free.
        if reg.listeners.get(&bound).is_some_and(|tx| !tx.is_closed()) {
            return Err(TransportError::Listen {
                addr: bound,
                why: "address already in use".into(),
            });
        }
        let (tx, rx) = mpsc::channel(MEM_BACKLOG);
        reg.listeners.insert(bound.clone(), tx);
        Ok((bound, rx))
    }

    /// Removes `addr` from the registry if it still belongs to the listener that ended.
    fn unregister(&self, addr: &str) {
        let mut reg = self.registry();
        if reg.listeners.get(addr).is_some_and(|tx| tx.is_closed()) {
            reg.listeners.remove(addr);
        }
    }
}

fn pick_port(reg: &mut Registry, host: &str) -> String {
    loop {
        reg.next_port = reg.next_port.max(FIRST_EPHEMERAL_PORT).wrapping_add(1);
        let candidate = format!("{host}:{}", reg.next_port);
        if !reg.listeners.contains_key(&candidate) {
            return candidate;
        }
    }
}

impl Transport for MemTransport {
    fn listen(
        &self,
        addr: &str,
        local: Hello,
        sink: actix::Recipient<NetEvent>,
    ) -> BoxFuture<Result<String, TransportError>> {
        let registered = self.register(addr);
        let setup = Setup {
            local,
            max_frame_bytes: self.max_frame_bytes,
            sink,
        };
        let this = self.clone();
        Box::pin(async move {
            let (bound, rx) = registered?;
            info!(addr = %bound, "listening (in-memory)");
            actix::spawn(accept_loop(this, rx, bound.clone(), setup));
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
        let this = self.clone();
        let dial: DialFn<DuplexStream> = Box::new(move |addr| {
            let r = this
                .connect_raw(&addr)
                .map(|s| (s, addr.clone()))
                .map_err(|e| format!("no listener at {addr:?} ({e})"));
            Box::pin(async move { r })
        });
        conn::start_link(dial, addrs, backoff, setup)
    }
}

/// Accepts until the owner is gone, then frees the address.
async fn accept_loop(
    transport: MemTransport,
    mut rx: mpsc::Receiver<Pending>,
    bound: String,
    setup: Setup,
) {
    let limiter = conn::connection_limiter(conn::MAX_CONNECTIONS_PER_LISTENER);
    let owner_check = Duration::from_millis(conn::OWNER_CHECK_MS);
    loop {
        let pending = tokio::select! {
            p = rx.recv() => p,
            _ = tokio::time::sleep(owner_check) => {
                if setup.sink.connected() {
                    continue;
                }
                break;
            }
        };
        // `None` cannot happen while the registry holds the sender; treat it as the end.
        let Some((stream, peer)) = pending else { break };
        if !setup.sink.connected() {
            break;
        }
        if let Some(permit) = conn::admit(&limiter, conn::MAX_CONNECTIONS_PER_LISTENER, &peer) {
            conn::spawn_accepted(stream, peer, setup.clone(), permit);
        }
    }
    rx.close();
    drop(rx);
    transport.unregister(&bound);
    info!(addr = %bound, "listener owner is gone; stopped listening");
}
