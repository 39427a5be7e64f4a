//! Connection machinery shared by the TCP and in-memory transports. Both hand this module a byte
//! stream (a TCP socket, or one end of an in-memory pipe), so handshake, framing, size limits,
//! close semantics and redial behave identically on either: the in-memory transport is the TCP
//! code path minus the kernel.
//!
//! Per connection there are two tasks on the current actix arbiter:
//! - the *reader* (the coordinator): handshake, then every decoded frame to the owner, then
//!   exactly one `Closed`. It reports everything, so the owner sees events in order.
//! - the *writer*: drains the bounded queue behind `ConnHandle`, and tells the reader when it
//!   ends (local close or write error). The reader tells it to stop (optionally after one last
//!   frame, e.g. a fatal error) when the read side ends.

use super::SEND_QUEUE_LIMIT;
use super::{Backoff, BoxFuture, ConnHandle, ConnId, Link, NetEvent, Outgoing, TransportError};
use crate::codec::{CodecError, FrameCodec};
use crate::messages::{ErrorCode, Hello, Message};
use futures::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How long a peer has to complete the hello exchange.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// How long one dial attempt (TCP connect) may take before the next address is tried.
pub const DIAL_TIMEOUT_MS: u64 = 3_000;
/// Bound on writing a last frame (a fatal error) and shutting the stream down.
const FINAL_WRITE_TIMEOUT_MS: u64 = 1_000;
/// After refusing a peer, how long and how much of its input is read and discarded before the
/// socket is dropped. Closing a TCP socket with unread input sends a reset, which can destroy
/// the error frame we just sent before the peer reads it (the "lingering close" of HTTP servers).
const LINGER_MS: u64 = 1_000;
const LINGER_MAX_BYTES: usize = 1 << 20;
/// Connections (including ones still in the handshake) one listener serves at once by default;
/// more are refused at accept time so a flood of bad peers cannot exhaust memory or file
/// descriptors. A master of a big cluster raises it (`agora master --max-connections`).
pub const MAX_CONNECTIONS_PER_LISTENER: usize = 4_096;
/// How often an idle listener checks whether its owner is still alive.
pub(crate) const OWNER_CHECK_MS: u64 = 500;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh process-wide connection id.
pub(crate) fn next_conn_id() -> ConnId {
    NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)
}

/// A byte stream a connection can run over.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + 'static> ByteStream for T {}

type Reader<S> = FramedRead<ReadHalf<S>, FrameCodec>;
type Writer<S> = FramedWrite<WriteHalf<S>, FrameCodec>;

/// What every connection of one listener or link shares.
#[derive(Clone)]
pub(crate) struct Setup {
    pub local: Hello,
    pub max_frame_bytes: usize,
    pub sink: actix::Recipient<NetEvent>,
}

/// How a connection attempt ended, for the link's backoff decision.
enum Outcome {
    /// The handshake failed (bad peer, mismatch, timeout, link closed meanwhile).
    Refused,
    /// The connection was up for `up_ms`; `owner_gone` if the sink no longer accepts events.
    Ended { up_ms: u64, owner_gone: bool },
}

/// Checks the peer's hello against ours; on mismatch returns the error code and a text naming
/// both values, so an operator can fix the configuration from either side's log.
pub(crate) fn check_hello(local: &Hello, peer: &Hello) -> Result<(), (ErrorCode, String)> {
    if peer.protocol_version != local.protocol_version {
        return Err((
            ErrorCode::VersionMismatch,
            format!(
                "protocol version mismatch: {:?} speaks version {}, {:?} speaks version {}",
                local.node_id, local.protocol_version, peer.node_id, peer.protocol_version
            ),
        ));
    }
    if peer.cluster != local.cluster {
        return Err((
            ErrorCode::ClusterMismatch,
            format!(
                "cluster mismatch: {:?} is in cluster {:?}, {:?} is in cluster {:?}",
                local.node_id, local.cluster, peer.node_id, peer.cluster
            ),
        ));
    }
    Ok(())
}

/// Why a handshake failed, and what (if anything) to tell the peer before closing.
struct Refusal {
    reason: String,
    reply: Option<Message>,
}

impl Refusal {
    fn quiet(reason: impl Into<String>) -> Self {
        Refusal {
            reason: reason.into(),
            reply: None,
        }
    }
}

/// The fatal error sent to a peer whose frame could not be read, if the stream still works.
fn reply_for(err: &CodecError) -> Option<Message> {
    match err {
        CodecError::TooLarge { .. } => Some(Message::fatal(ErrorCode::TooLarge, err.to_string())),
        CodecError::Decode(_) => Some(Message::fatal(ErrorCode::BadRequest, err.to_string())),
        CodecError::Encode(_) | CodecError::Io(_) => None,
    }
}

/// Sends our hello and waits for the peer's (both sides send first, so neither waits on the
/// other). The caller bounds this with the handshake timeout.
async fn exchange_hellos<S: ByteStream>(
    reader: &mut Reader<S>,
    writer: &mut Writer<S>,
    local: &Hello,
) -> Result<Hello, Refusal> {
    if let Err(e) = writer.send(Message::Hello(local.clone())).await {
        return Err(Refusal::quiet(format!("cannot send hello: {e}")));
    }
    match reader.next().await {
        None => Err(Refusal::quiet(
            "peer closed the connection during the handshake",
        )),
        Some(Err(e)) => Err(Refusal {
            reason: format!("bad first frame: {e}"),
            reply: reply_for(&e),
        }),
        Some(Ok(Message::Hello(peer))) => match check_hello(local, &peer) {
            Ok(()) => Ok(peer),
            Err((code, text)) => Err(Refusal {
                reply: Some(Message::fatal(code, text.clone())),
                reason: text,
            }),
        },
        Some(Ok(Message::Error { code, message, .. })) => Err(Refusal::quiet(format!(
            "refused by peer ({code:?}): {message}"
        ))),
        Some(Ok(other)) => Err(Refusal {
            reason: format!("expected hello, got {}", other.kind()),
            reply: Some(Message::fatal(
                ErrorCode::BadRequest,
                format!("expected hello as first frame, got {}", other.kind()),
            )),
        }),
    }
}

/// Handshake bounded by the timeout and by `abort` (a link being closed meanwhile).
async fn handshake<S: ByteStream>(
    reader: &mut Reader<S>,
    writer: &mut Writer<S>,
    local: &Hello,
    abort: &CancellationToken,
) -> Result<Hello, Refusal> {
    let limit = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    tokio::select! {
        _ = abort.cancelled() => Err(Refusal::quiet("link closed during the handshake")),
        r = tokio::time::timeout(limit, exchange_hellos(reader, writer, local)) => match r {
            Ok(r) => r,
            Err(_) => Err(Refusal::quiet(format!(
                "no hello within {HANDSHAKE_TIMEOUT_MS} ms"
            ))),
        },
    }
}

/// Writes `last` (bounded) and shuts the write side down (bounded).
async fn finish_writer<S: ByteStream>(writer: &mut Writer<S>, last: Option<Message>) {
    let limit = Duration::from_millis(FINAL_WRITE_TIMEOUT_MS);
    if let Some(msg) = last {
        let _ = tokio::time::timeout(limit, writer.feed(msg)).await;
    }
    // `close` flushes what is buffered, then shuts down the write half (TCP FIN / pipe EOF).
    let _ = tokio::time::timeout(limit, writer.close()).await;
}

/// Reads and discards the peer's input until it closes, or the time or byte budget runs out, so
/// the error frame already written reaches it (see `LINGER_MS`).
async fn linger<S: ByteStream>(mut read: ReadHalf<S>) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LINGER_MS);
    let mut buf = vec![0u8; 8 * 1024];
    let mut total = 0usize;
    while total < LINGER_MAX_BYTES {
        match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
}

/// Drains the send queue until a local close, a write error or the reader's stop signal. Sends
/// the reason it ended on `done`, and whether a last frame went out after which the read side
/// should linger (the reader ignores it when it asked for the stop itself).
async fn write_loop<S: ByteStream>(
    mut writer: Writer<S>,
    mut rx: mpsc::Receiver<Outgoing>,
    mut stop: oneshot::Receiver<Option<Message>>,
    done: oneshot::Sender<(String, bool)>,
    peer_addr: String,
) {
    let mut sent_last = false;
    let reason = loop {
        let cmd = tokio::select! {
            biased;
            last = &mut stop => {
                finish_writer(&mut writer, last.unwrap_or(None)).await;
                break "stopped by the read side".to_string();
            }
            cmd = rx.recv() => cmd,
        };
        match cmd {
            // The reader holds a sender for the connection's lifetime, so this means it is gone.
            None => break "send queue closed".to_string(),
            Some(Outgoing::Close(last)) => {
                sent_last = last.is_some();
                finish_writer(&mut writer, last).await;
                break "closed locally".to_string();
            }
            Some(Outgoing::Msg(msg)) => {
                let kind = msg.kind();
                match writer.feed(msg).await {
                    // A message that cannot be encoded (too large for the limit) is the local
                    // sender's bug: drop it loudly and keep the connection.
                    Err(e @ (CodecError::TooLarge { .. } | CodecError::Encode(_))) => {
                        tracing::error!(peer = %peer_addr, kind, "dropping outgoing message: {e}");
                    }
                    Err(e) => break format!("write failed: {e}"),
                    Ok(()) => {}
                }
                // Batch: flush only once the queue is drained.
                if rx.is_empty() {
                    if let Err(e) = writer.flush().await {
                        break format!("write failed: {e}");
                    }
                }
            }
        }
    };
    let _ = done.send((reason, sent_last));
}

/// The current connection of a link, shared between the link task and `Link::send`.
pub(crate) struct LinkState {
    current: Mutex<Option<ConnHandle>>,
    cancel: CancellationToken,
}

impl LinkState {
    fn current(&self) -> MutexGuard<'_, Option<ConnHandle>> {
        // A panic elsewhere while holding the lock leaves a valid Option; keep going.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set_current(&self, handle: &ConnHandle) {
        *self.current() = Some(handle.clone());
        // Closed between the handshake and now: `Link::close` may have missed this handle.
        if self.cancel.is_cancelled() {
            handle.close(None);
        }
    }
    fn clear_current(&self, conn: ConnId) {
        let mut cur = self.current();
        if cur.as_ref().map(|h| h.conn) == Some(conn) {
            *cur = None;
        }
    }
}

/// Runs one connection over `stream` from handshake to close, reporting to `setup.sink`.
/// `link` is set for dialed connections (to publish the handle and honour `Link::close`).
async fn run_connection<S: ByteStream>(
    stream: S,
    conn: ConnId,
    peer_addr: String,
    setup: &Setup,
    link: Option<&LinkState>,
) -> Outcome {
    let codec = FrameCodec::new(setup.max_frame_bytes);
    let (r, w) = tokio::io::split(stream);
    let mut reader = FramedRead::new(r, codec);
    let mut writer = FramedWrite::new(w, codec);
    let never = CancellationToken::new();
    let abort = link.map(|l| &l.cancel).unwrap_or(&never);
    let peer = match handshake(&mut reader, &mut writer, &setup.local, abort).await {
        Ok(peer) => peer,
        Err(refusal) => {
            warn!(conn, peer = %peer_addr, "handshake failed: {}", refusal.reason);
            let lingers = refusal.reply.is_some();
            finish_writer(&mut writer, refusal.reply).await;
            drop(writer);
            if lingers {
                linger(reader.into_inner()).await;
            }
            // A link's owner learns why it cannot get in (e.g. wrong cluster); a listener's
            // owner never heard of this connection, so it is told nothing.
            if link.is_some() && !abort.is_cancelled() {
                let reason = format!("handshake failed: {}", refusal.reason);
                let _ = setup.sink.send(NetEvent::Closed { conn, reason }).await;
            }
            return Outcome::Refused;
        }
    };
    // Dialed links (a handful per node) log at info; a listener's connections at debug: a
    // master taking 10k agents back after a failover would otherwise spend its time on logs.
    if link.is_some() {
        info!(conn, peer = %peer_addr, node = %peer.node_id, kind = ?peer.node_kind, "connected");
    } else {
        debug!(conn, peer = %peer_addr, node = %peer.node_id, kind = ?peer.node_kind, "connected");
    }
    let (tx, rx) = mpsc::channel(SEND_QUEUE_LIMIT);
    let handle = ConnHandle::new(conn, peer_addr.clone(), tx);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    actix::spawn(write_loop(writer, rx, stop_rx, done_tx, peer_addr.clone()));
    if let Some(l) = link {
        l.set_current(&handle);
    }
    let up_since = Instant::now();
    let connected = NetEvent::Connected {
        conn,
        peer,
        handle: handle.clone(),
    };
    let (reason, owner_gone, lingers) = if setup.sink.send(connected).await.is_err() {
        let _ = stop_tx.send(None);
        ("owner is gone".to_string(), true, false)
    } else {
        read_loop(&mut reader, conn, &peer_addr, &setup.sink, stop_tx, done_rx).await
    };
    if let Some(l) = link {
        l.clear_current(conn);
    }
    // `handle` is dropped here; the owner's clones now report `Closed` on send.
    drop(handle);
    if link.is_some() {
        info!(conn, peer = %peer_addr, "connection closed: {reason}");
    } else {
        debug!(conn, peer = %peer_addr, "connection closed: {reason}");
    }
    let closed = NetEvent::Closed { conn, reason };
    let owner_gone = owner_gone || setup.sink.send(closed).await.is_err();
    if lingers {
        linger(reader.into_inner()).await;
    }
    Outcome::Ended {
        up_ms: up_since.elapsed().as_millis() as u64,
        owner_gone,
    }
}

/// Forwards frames to the owner until the connection ends. Returns the reason, whether the owner
/// is gone, and whether a last error frame was sent (so the caller lingers before dropping).
async fn read_loop<S: ByteStream>(
    reader: &mut Reader<S>,
    conn: ConnId,
    peer_addr: &str,
    sink: &actix::Recipient<NetEvent>,
    stop: oneshot::Sender<Option<Message>>,
    mut done: oneshot::Receiver<(String, bool)>,
) -> (String, bool, bool) {
    let (reason, last, owner_gone) = loop {
        let item = tokio::select! {
            biased;
            why = &mut done => {
                // The writer ended first (local close or write error): nothing more to read.
                let (why, sent_last) = why.unwrap_or_else(|_| ("writer ended".into(), false));
                return (why, false, sent_last);
            }
            item = reader.next() => item,
        };
        match item {
            None => break ("peer closed the connection".to_string(), None, false),
            Some(Ok(Message::Hello(_))) => {
                let why = "unexpected hello after the handshake";
                warn!(conn, peer = %peer_addr, "{why}");
                break (
                    why.into(),
                    Some(Message::fatal(ErrorCode::BadRequest, why)),
                    false,
                );
            }
            Some(Ok(msg)) => {
                if sink.send(NetEvent::Frame { conn, msg }).await.is_err() {
                    break ("owner is gone".to_string(), None, true);
                }
            }
            Some(Err(e)) => {
                warn!(conn, peer = %peer_addr, "closing connection: {e}");
                break (e.to_string(), reply_for(&e), false);
            }
        }
    };
    // Let the writer send the last frame and shut down before `Closed` is reported.
    let lingers = last.is_some();
    let _ = stop.send(last);
    let limit = Duration::from_millis(2 * FINAL_WRITE_TIMEOUT_MS + 100);
    let _ = tokio::time::timeout(limit, done).await;
    (reason, owner_gone, lingers)
}

/// Serves one accepted stream on its own task; `permit` bounds the listener's connections.
pub(crate) fn spawn_accepted<S: ByteStream>(
    stream: S,
    peer_addr: String,
    setup: Setup,
    permit: OwnedSemaphorePermit,
) {
    actix::spawn(async move {
        let conn = next_conn_id();
        debug!(conn, peer = %peer_addr, "accepted");
        let _ = run_connection(stream, conn, peer_addr, &setup, None).await;
        drop(permit);
    });
}

/// The per-listener connection limit.
pub(crate) fn connection_limiter(max_connections: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(max_connections.max(1)))
}

/// Takes a connection slot, or logs why the new connection is being dropped.
pub(crate) fn admit(
    limiter: &Arc<Semaphore>,
    max_connections: usize,
    peer_addr: &str,
) -> Option<OwnedSemaphorePermit> {
    match limiter.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            warn!(peer = %peer_addr, "refusing connection: {max_connections} connections already open");
            None
        }
    }
}

/// Opens a byte stream to an address: `Ok((stream, peer address for logs))` or a reason.
pub(crate) type DialFn<S> = Box<dyn Fn(String) -> BoxFuture<Result<(S, String), String>>>;

/// A `Link` over any dialer. Dropping it closes it, like dropping a socket.
pub(crate) struct StreamLink {
    state: Arc<LinkState>,
}

impl Link for StreamLink {
    fn send(&self, msg: Message) -> Result<(), TransportError> {
        match self.state.current().as_ref() {
            None => Err(TransportError::NotConnected),
            // The connection is ending; a new one will be dialed.
            Some(h) => h.send(msg).map_err(|e| match e {
                TransportError::Closed => TransportError::NotConnected,
                other => other,
            }),
        }
    }

    fn close(&self) {
        self.state.cancel.cancel();
        if let Some(h) = self.state.current().take() {
            h.close(None);
        }
    }
}

impl Drop for StreamLink {
    fn drop(&mut self) {
        self.close();
    }
}

/// Starts a link task that dials `addrs` in turn and redials with backoff until closed.
pub(crate) fn start_link<S: ByteStream>(
    dial: DialFn<S>,
    addrs: Vec<String>,
    backoff: Backoff,
    setup: Setup,
) -> Box<dyn Link> {
    let state = Arc::new(LinkState {
        current: Mutex::new(None),
        cancel: CancellationToken::new(),
    });
    actix::spawn(link_loop(dial, addrs, backoff, setup, state.clone()));
    Box::new(StreamLink { state })
}

/// After a connection to address `idx` ended having been up `up_ms`: whether it counts as
/// healthy, and the address index the next round starts with (not reduced modulo the list's
/// length). A connection that outlived the longest backoff counts as healthy; one that is
/// dropped right away keeps growing the delay. A peer that drops us at once (e.g. a standby
/// master) is not retried first: the next address is, so a list of masters finds the leader.
/// (The simulator's clients follow the same rule.)
pub fn after_connection(idx: usize, up_ms: u64, cap_ms: u64) -> (bool, usize) {
    let healthy = up_ms >= cap_ms;
    (healthy, if healthy { idx } else { idx + 1 })
}

/// The redial loop. A round tries every address once, starting with the one that worked last;
/// after each round without a lasting connection it sleeps a capped, jittered, growing delay.
async fn link_loop<S: ByteStream>(
    dial: DialFn<S>,
    addrs: Vec<String>,
    backoff: Backoff,
    setup: Setup,
    state: Arc<LinkState>,
) {
    if addrs.is_empty() {
        tracing::error!("link has no address to dial; it will never connect");
        return;
    }
    let jitter_seed: u64 = rand::random();
    let mut failed_rounds: u32 = 0;
    let mut start = 0usize;
    while !state.cancel.is_cancelled() {
        let mut healthy = false;
        for i in 0..addrs.len() {
            let idx = (start + i) % addrs.len();
            match attempt(&dial, &addrs[idx], &setup, &state).await {
                None => continue,
                Some(Outcome::Refused) => continue,
                Some(Outcome::Ended {
                    owner_gone: true, ..
                }) => {
                    info!(addr = %addrs[idx], "link owner is gone; stopping");
                    state.cancel.cancel();
                    return;
                }
                Some(Outcome::Ended { up_ms, .. }) => {
                    (healthy, start) = after_connection(idx, up_ms, backoff.cap_ms);
                    break;
                }
            }
        }
        failed_rounds = if healthy {
            0
        } else {
            failed_rounds.saturating_add(1)
        };
        let attempt_no = failed_rounds.saturating_sub(1);
        let seed = jitter_seed.wrapping_add(u64::from(failed_rounds));
        let delay_ms = crate::time::backoff_ms(attempt_no, backoff.base_ms, backoff.cap_ms, seed);
        debug!(delay_ms, "link redialing after a pause");
        tokio::select! {
            _ = state.cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
        }
    }
    debug!("link closed");
}

/// One dial and connection; `None` if the dial itself failed or the link was closed.
async fn attempt<S: ByteStream>(
    dial: &DialFn<S>,
    addr: &str,
    setup: &Setup,
    state: &LinkState,
) -> Option<Outcome> {
    let limit = Duration::from_millis(DIAL_TIMEOUT_MS);
    let dialed = tokio::select! {
        _ = state.cancel.cancelled() => return None,
        r = tokio::time::timeout(limit, dial(addr.to_string())) => r,
    };
    match dialed {
        Ok(Ok((stream, peer_addr))) => {
            let conn = next_conn_id();
            Some(run_connection(stream, conn, peer_addr, setup, Some(state)).await)
        }
        Ok(Err(why)) => {
            debug!(addr, "dial failed: {why}");
            None
        }
        Err(_) => {
            debug!(addr, "dial timed out after {DIAL_TIMEOUT_MS} ms");
            None
        }
    }
}
