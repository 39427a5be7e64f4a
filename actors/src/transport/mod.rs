//! Transports carry `Message`s between processes (TCP) or inside one process (in-memory), behind
//! one interface so the same actors run unchanged on either.
//!
//! Model: point-to-point connections. A listener accepts connections; a `Link` dials an address
//! and redials with capped backoff whenever the connection is lost, until the link is closed.
//! Every connection starts with a `Hello` each way (protocol version and cluster name must match,
//! or the connection is refused with a clear `Message::Error`). Everything that happens on a
//! connection is reported to the owner as a `NetEvent` actix message. Sending never blocks and
//! never queues across reconnects: messages that must not be lost are retried by their owners.

use crate::messages::{Hello, Message};
use std::future::Future;
use std::pin::Pin;

mod conn;
pub mod mem;
pub mod tcp;

pub use conn::{
    after_connection, DIAL_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS, MAX_CONNECTIONS_PER_LISTENER,
};
pub use mem::MemTransport;
pub use tcp::TcpTransport;

/// Identifies one connection (one incarnation: a redial gets a new id). Unique per process.
pub type ConnId = u64;

/// Default size limit for one frame (DESIGN: 16 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Messages waiting to be written on one connection before `send` reports `QueueFull`.
pub const SEND_QUEUE_LIMIT: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: String, why: String },
    #[error("bad address {0:?}")]
    BadAddress(String),
    #[error("not connected")]
    NotConnected,
    #[error("send queue full ({SEND_QUEUE_LIMIT} messages)")]
    QueueFull,
    #[error("connection closed")]
    Closed,
}

/// What the owner of a listener or link is told.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub enum NetEvent {
    /// Handshake done. `handle` sends on this connection.
    Connected {
        conn: ConnId,
        peer: Hello,
        handle: ConnHandle,
    },
    /// A decoded frame from the peer (never a `Hello`).
    Frame { conn: ConnId, msg: Message },
    /// The connection is gone (peer closed, decode error, oversize frame, handshake refused...).
    /// Exactly one per `Connected`. A link also reports a `Closed` without a `Connected` when
    /// the handshake fails (wrong cluster or version), so its owner can say why it cannot get in;
    /// a listener's owner hears nothing of connections that never completed the handshake.
    Closed { conn: ConnId, reason: String },
}

/// Sends on one connection. Cheap to clone; dropping it does not close the connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub conn: ConnId,
    /// The peer's address as the transport sees it (for logs).
    pub peer_addr: String,
    tx: tokio::sync::mpsc::Sender<Outgoing>,
}

#[derive(Debug)]
pub(crate) enum Outgoing {
    Msg(Message),
    /// Send this message (if any), then close the connection.
    Close(Option<Message>),
}

impl ConnHandle {
    pub(crate) fn new(
        conn: ConnId,
        peer_addr: String,
        tx: tokio::sync::mpsc::Sender<Outgoing>,
    ) -> Self {
        ConnHandle {
            conn,
            peer_addr,
            tx,
        }
    }
    pub fn send(&self, msg: Message) -> Result<(), TransportError> {
        use tokio::sync::mpsc::error::TrySendError;
        self.tx.try_send(Outgoing::Msg(msg)).map_err(|e| match e {
            TrySendError::Full(_) => TransportError::QueueFull,
            TrySendError::Closed(_) => TransportError::Closed,
        })
    }
    /// Sends `last` (e.g. a fatal `Message::Error`) and closes.
    pub fn close(&self, last: Option<Message>) {
        let _ = self.tx.try_send(Outgoing::Close(last));
    }
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + 'static>>;

/// A dialing, redialing connection owned by a client node (agent, scheduler, executor).
pub trait Link: Send {
    /// Sends on the current connection; `NotConnected` while redialing.
    fn send(&self, msg: Message) -> Result<(), TransportError>;
    /// Stops redialing and closes the current connection.
    fn close(&self);
}

/// Redial policy for links.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base_ms: u64,
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 100,
            cap_ms: 5_000,
        }
    }
}

/// A way of moving messages. Must be used from inside an actix system (it spawns tasks there).
pub trait Transport: Send + Sync + 'static {
    /// Starts accepting connections on `addr` (`host:port`, port 0 picks a free one); events go
    /// to `sink`. Resolves to the actual bound address.
    fn listen(
        &self,
        addr: &str,
        local: Hello,
        sink: actix::Recipient<NetEvent>,
    ) -> BoxFuture<Result<String, TransportError>>;
    /// Dials `addrs` (tried in turn; a list supports several masters later) and keeps redialing
    /// with `backoff` until closed. Every (re)connection reports `Connected`, then `Frame`s, then
    /// `Closed`.
    fn connect(
        &self,
        addrs: Vec<String>,
        local: Hello,
        backoff: Backoff,
        sink: actix::Recipient<NetEvent>,
    ) -> Box<dyn Link>;
}
