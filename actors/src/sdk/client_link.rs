//! The connection half both SDK shells keep (the scheduler driver towards its master, the
//! executor driver towards its agent): the link that redials, the current connection, which
//! connection's events count, the linger before a stop, and the exit code's receiver. The two
//! shells differ only in their cores; this is what they had written twice.

use crate::messages::{Hello, Message, NodeKind};
use crate::transport::{ConnHandle, Link, NetEvent};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

/// A transport event of the current connection, for the shell to hand to its core.
pub(crate) enum LinkEvent {
    Connected(Hello, ConnHandle),
    Frame(Message),
    Closed(String),
}

pub(crate) struct ClientLink {
    link: Option<Box<dyn Link>>,
    conn: Option<ConnHandle>,
    exit: Option<oneshot::Sender<i32>>,
    stopping: bool,
    /// Who is at the other end (`master`, `agent`), for checks and log lines.
    peer_kind: NodeKind,
}

impl ClientLink {
    pub(crate) fn new(exit: oneshot::Sender<i32>, peer_kind: NodeKind) -> ClientLink {
        ClientLink {
            link: None,
            conn: None,
            exit: Some(exit),
            stopping: false,
            peer_kind,
        }
    }

    pub(crate) fn set_link(&mut self, link: Box<dyn Link>) {
        self.link = Some(link);
    }

    /// Drops the link and the connection (before dialling anew).
    pub(crate) fn drop_link(&mut self) {
        if let Some(link) = self.link.take() {
            link.close();
        }
        self.conn = None;
    }

    pub(crate) fn send(&self, msg: Message) {
        let kind = msg.kind();
        match &self.conn {
            Some(conn) => {
                if let Err(e) = conn.send(msg) {
                    warn!(kind, peer = ?self.peer_kind, error = %e, "could not send");
                }
            }
            None => debug!(kind, peer = ?self.peer_kind, "not connected; message dropped"),
        }
    }

    /// Only events of the current connection pass; a new connection is adopted if the peer is
    /// of the expected kind and the shell is not stopping (else it is closed at once).
    pub(crate) fn route(&mut self, ev: NetEvent) -> Option<LinkEvent> {
        let current = self.conn.as_ref().map(|c| c.conn);
        match ev {
            NetEvent::Connected { peer, handle, .. } => {
                if self.stopping {
                    handle.close(None);
                    return None;
                }
                if peer.node_kind != self.peer_kind {
                    warn!(peer = %handle.peer_addr, kind = ?peer.node_kind, expected = ?self.peer_kind,
                        "the peer is not of the expected kind; closing");
                    handle.close(None);
                    return None;
                }
                self.conn = Some(handle.clone());
                Some(LinkEvent::Connected(peer, handle))
            }
            NetEvent::Frame { conn, msg } if Some(conn) == current => Some(LinkEvent::Frame(msg)),
            NetEvent::Closed { conn, reason } if Some(conn) == current => {
                self.conn = None;
                Some(LinkEvent::Closed(reason))
            }
            NetEvent::Frame { conn, msg } => {
                debug!(
                    conn,
                    kind = msg.kind(),
                    "frame from a stale connection ignored"
                );
                None
            }
            NetEvent::Closed { conn, .. } => {
                debug!(conn, "stale connection closed");
                None
            }
        }
    }

    /// First half of a stop: closes the connection (its queued frames are flushed). False if
    /// a stop is already under way. The shell calls [`ClientLink::finish`] after a linger.
    pub(crate) fn begin_stop(&mut self, code: i32, what: &'static str) -> bool {
        if self.stopping {
            return false;
        }
        self.stopping = true;
        info!(code, what, "stopping");
        if let Some(conn) = self.conn.take() {
            conn.close(None);
        }
        true
    }

    /// Closes the link and reports `code` (once; later calls report nothing).
    pub(crate) fn finish(&mut self, code: i32) {
        if let Some(link) = self.link.take() {
            link.close();
        }
        if let Some(tx) = self.exit.take() {
            // The receiver may be gone (nobody waits for the code); that is fine.
            let _ = tx.send(code);
        }
    }
}
