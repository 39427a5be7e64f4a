//! Transport behaviour, run against both the TCP and the in-memory transport: handshake, frames
//! both ways, refusals, size limits, hostile peers and redial.

use actix::{Actor, Context, Handler, Recipient};
use agora_actors::codec::{decode_body, encode_frame, FrameCodec};
use agora_actors::transport::{
    Backoff, ConnHandle, ConnId, Link, MemTransport, NetEvent, TcpTransport, Transport,
    TransportError,
};
use agora_actors::{AgentId, ErrorCode, ExecutorId, FrameworkId, Hello, Message, NodeKind};
use futures::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

const WAIT: Duration = Duration::from_secs(3);
const FAST: Backoff = Backoff {
    base_ms: 20,
    cap_ms: 100,
};

/// Collects `NetEvent`s into a channel the test reads.
struct Collector(mpsc::UnboundedSender<NetEvent>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<NetEvent> for Collector {
    type Result = ();
    fn handle(&mut self, ev: NetEvent, _: &mut Context<Self>) {
        let _ = self.0.send(ev);
    }
}

struct Events(mpsc::UnboundedReceiver<NetEvent>);

fn collector() -> (Recipient<NetEvent>, Events, actix::Addr<Collector>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = Collector(tx).start();
    (addr.clone().recipient(), Events(rx), addr)
}

impl Events {
    async fn next(&mut self) -> NetEvent {
        match tokio::time::timeout(WAIT, self.0.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => panic!("event channel closed"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }
    async fn connected(&mut self) -> (ConnId, Hello, ConnHandle) {
        match self.next().await {
            NetEvent::Connected { conn, peer, handle } => (conn, peer, handle),
            other => panic!("expected Connected, got {other:?}"),
        }
    }
    async fn frame(&mut self, want_conn: ConnId) -> Message {
        match self.next().await {
            NetEvent::Frame { conn, msg } if conn == want_conn => msg,
            other => panic!("expected a frame on {want_conn}, got {other:?}"),
        }
    }
    async fn closed(&mut self, want_conn: ConnId) -> String {
        match self.next().await {
            NetEvent::Closed { conn, reason } if conn == want_conn => reason,
            other => panic!("expected Closed on {want_conn}, got {other:?}"),
        }
    }
    /// A link's `Closed` for a connection that never completed the handshake.
    async fn refused(&mut self) -> String {
        match self.next().await {
            NetEvent::Closed { reason, .. } => reason,
            other => panic!("expected Closed, got {other:?}"),
        }
    }
    async fn quiet_for(&mut self, ms: u64) {
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(ms), self.0.recv()).await {
            panic!("expected no event, got {ev:?}");
        }
    }
}

fn master_hello() -> Hello {
    Hello::new("prod", NodeKind::Master, "master-1")
}

fn agent_hello() -> Hello {
    Hello::new("prod", NodeKind::Agent, "agent-1")
}

fn blob(bytes: usize) -> Message {
    Message::FrameworkToExecutor {
        framework_id: FrameworkId::new("fw").unwrap(),
        executor_id: ExecutorId::new("ex").unwrap(),
        agent_id: AgentId::new("ag").unwrap(),
        data: vec![0xab; bytes],
    }
}

/// A listener (events in `lev`) and a link to it (events in `dev`), both connected.
struct Pair {
    bound: String,
    lev: Events,
    dev: Events,
    link: Box<dyn Link>,
    l_conn: ConnId,
    l_handle: ConnHandle,
    d_conn: ConnId,
    _actors: Vec<actix::Addr<Collector>>,
}

async fn pair(listen_t: &dyn Transport, dial_t: &dyn Transport, addr: &str) -> Pair {
    let (lsink, mut lev, la) = collector();
    let bound = listen_t.listen(addr, master_hello(), lsink).await.unwrap();
    let (dsink, mut dev, da) = collector();
    let link = dial_t.connect(vec![bound.clone()], agent_hello(), FAST, dsink);
    let (l_conn, l_peer, l_handle) = lev.connected().await;
    let (d_conn, d_peer, _) = dev.connected().await;
    assert_eq!(l_peer, agent_hello());
    assert_eq!(d_peer, master_hello());
    assert_ne!(l_conn, d_conn, "connection ids are process-wide unique");
    Pair {
        bound,
        lev,
        dev,
        link,
        l_conn,
        l_handle,
        d_conn,
        _actors: vec![la, da],
    }
}

// ---- handshake and messages ------------------------------------------------------------------

async fn messages_both_ways(t: &dyn Transport, addr: &str) {
    let mut p = pair(t, t, addr).await;
    for i in 0..200u64 {
        p.link
            .send(Message::StatusUpdateAck {
                framework_id: FrameworkId::new("fw").unwrap(),
                task_id: agora_actors::TaskId::new(format!("t{i}")).unwrap(),
                uuid: i,
            })
            .unwrap();
    }
    for i in 0..200u64 {
        match p.lev.frame(p.l_conn).await {
            Message::StatusUpdateAck { uuid, .. } => assert_eq!(uuid, i, "in order"),
            other => panic!("unexpected {other:?}"),
        }
    }
    p.l_handle.send(Message::Pong).unwrap();
    p.l_handle.send(blob(50_000)).unwrap();
    assert_eq!(p.dev.frame(p.d_conn).await, Message::Pong);
    assert_eq!(p.dev.frame(p.d_conn).await, blob(50_000));

    // Closing the link closes the connection on both sides, once, and stops redialing.
    p.link.close();
    assert_eq!(p.dev.closed(p.d_conn).await, "closed locally");
    assert_eq!(p.lev.closed(p.l_conn).await, "peer closed the connection");
    assert_eq!(
        p.link.send(Message::Ping),
        Err(TransportError::NotConnected)
    );
    assert_eq!(p.l_handle.send(Message::Ping), Err(TransportError::Closed));
    p.lev.quiet_for(300).await;
    p.dev.quiet_for(1).await;
}

#[actix_rt::test]
async fn tcp_handshake_and_messages_both_ways() {
    messages_both_ways(&TcpTransport::default(), "127.0.0.1:0").await;
}

#[actix_rt::test]
async fn mem_handshake_and_messages_both_ways() {
    messages_both_ways(&MemTransport::default(), "mem://master").await;
}

// ---- refusals ------------------------------------------------------------------------------

/// A link with a bad hello is refused: neither owner sees `Connected`, the link's owner is told
/// why (naming both values), and the link keeps retrying (and being refused).
async fn mismatch_refused(t: &dyn Transport, addr: &str, bad: Hello, want: &[&str]) {
    let (lsink, mut lev, _la) = collector();
    let bound = t.listen(addr, master_hello(), lsink).await.unwrap();
    let (dsink, mut dev, _da) = collector();
    let link = t.connect(vec![bound], bad, FAST, dsink);
    for _ in 0..2 {
        let reason = dev.refused().await;
        for w in want {
            assert!(reason.contains(w), "{reason:?} should mention {w:?}");
        }
    }
    assert_eq!(link.send(Message::Ping), Err(TransportError::NotConnected));
    link.close();
    lev.quiet_for(100).await;
}

/// What a hand-written client sees after sending `hello`: every frame until the peer closes.
async fn raw_exchange<S: AsyncRead + AsyncWrite>(stream: S, first: Message) -> Vec<Message> {
    let (r, w) = tokio::io::split(stream);
    let mut reader = FramedRead::new(r, FrameCodec::new(1 << 20));
    let mut writer = FramedWrite::new(w, FrameCodec::new(1 << 20));
    writer.send(first).await.unwrap();
    let mut got = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(WAIT, reader.next()).await {
        got.push(item.unwrap());
    }
    got
}

fn assert_refused_with(frames: &[Message], code: ErrorCode, want: &[&str]) {
    assert_eq!(frames.len(), 2, "hello then error, got {frames:?}");
    assert_eq!(frames[0], Message::Hello(master_hello()));
    match &frames[1] {
        Message::Error {
            code: c,
            message,
            fatal,
        } => {
            assert_eq!(*c, code);
            assert!(fatal);
            for w in want {
                assert!(message.contains(w), "{message:?} should mention {w:?}");
            }
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
}

fn old_version() -> Hello {
    let mut h = agent_hello();
    h.protocol_version += 41;
    h
}

fn other_cluster() -> Hello {
    Hello::new("staging", NodeKind::Agent, "agent-1")
}

fn version_texts() -> [String; 2] {
    let v = agent_hello().protocol_version;
    [format!("version {v}"), format!("version {}", v + 41)]
}

#[actix_rt::test]
async fn tcp_version_and_cluster_mismatch_refused() {
    let t = TcpTransport::default();
    let [a, b] = version_texts();
    mismatch_refused(&t, "127.0.0.1:0", old_version(), &[&a, &b]).await;
    mismatch_refused(
        &t,
        "127.0.0.1:0",
        other_cluster(),
        &["\"prod\"", "\"staging\""],
    )
    .await;

    // The error frame itself, as a hand-written client receives it.
    let (lsink, mut lev, _la) = collector();
    let bound = t
        .listen("127.0.0.1:0", master_hello(), lsink)
        .await
        .unwrap();
    let s = tokio::net::TcpStream::connect(&bound).await.unwrap();
    let frames = raw_exchange(s, Message::Hello(old_version())).await;
    assert_refused_with(&frames, ErrorCode::VersionMismatch, &[&a, &b]);
    let s = tokio::net::TcpStream::connect(&bound).await.unwrap();
    let frames = raw_exchange(s, Message::Hello(other_cluster())).await;
    assert_refused_with(&frames, ErrorCode::ClusterMismatch, &["prod", "staging"]);
    lev.quiet_for(50).await;
}

#[actix_rt::test]
async fn mem_version_and_cluster_mismatch_refused() {
    let t = MemTransport::default();
    let [a, b] = version_texts();
    mismatch_refused(&t, "mem://m1", old_version(), &[&a, &b]).await;
    mismatch_refused(
        &t,
        "mem://m2",
        other_cluster(),
        &["\"prod\"", "\"staging\""],
    )
    .await;

    let (lsink, mut lev, _la) = collector();
    let bound = t.listen("mem://m3", master_hello(), lsink).await.unwrap();
    let frames = raw_exchange(
        t.connect_raw(&bound).unwrap(),
        Message::Hello(old_version()),
    )
    .await;
    assert_refused_with(&frames, ErrorCode::VersionMismatch, &[&a, &b]);
    let frames = raw_exchange(
        t.connect_raw(&bound).unwrap(),
        Message::Hello(other_cluster()),
    )
    .await;
    assert_refused_with(&frames, ErrorCode::ClusterMismatch, &["prod", "staging"]);
    // A first frame that is not a hello is refused too.
    let frames = raw_exchange(t.connect_raw(&bound).unwrap(), Message::Ping).await;
    assert!(matches!(
        frames.last(),
        Some(Message::Error {
            code: ErrorCode::BadRequest,
            fatal: true,
            ..
        })
    ));
    lev.quiet_for(50).await;
}

// ---- size limits ---------------------------------------------------------------------------

/// The listener allows 1 KiB frames, the link 1 MiB. An oversize frame from the link closes that
/// connection with a `TooLarge` error; the link redials and the listener serves it again. An
/// oversize message the listener tries to send is dropped without closing anything.
async fn oversize(listen_t: &dyn Transport, dial_t: &dyn Transport, addr: &str) {
    let mut p = pair(listen_t, dial_t, addr).await;
    p.link.send(blob(4_000)).unwrap();
    let reason = p.lev.closed(p.l_conn).await;
    assert!(reason.contains("exceeds the limit of 1024"), "{reason}");
    match p.dev.frame(p.d_conn).await {
        Message::Error { code, fatal, .. } => {
            assert_eq!(code, ErrorCode::TooLarge);
            assert!(fatal);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    p.dev.closed(p.d_conn).await;

    // Redialed; the listener is still serving.
    let (l2, _, lh2) = p.lev.connected().await;
    let (d2, _, _) = p.dev.connected().await;
    lh2.send(blob(4_000)).unwrap(); // too big for this side's limit: dropped, logged
    lh2.send(Message::Pong).unwrap();
    assert_eq!(p.dev.frame(d2).await, Message::Pong);
    p.link.send(Message::Ping).unwrap();
    assert_eq!(p.lev.frame(l2).await, Message::Ping);
    drop(p.link);
    p.lev.closed(l2).await;
    let _ = p.bound;
}

#[actix_rt::test]
async fn tcp_oversize_frame_closes_only_that_connection() {
    oversize(
        &TcpTransport::new(1024),
        &TcpTransport::new(1 << 20),
        "127.0.0.1:0",
    )
    .await;
}

#[actix_rt::test]
async fn mem_oversize_frame_closes_only_that_connection() {
    let small = MemTransport::new(1024);
    let big = small.with_max_frame_bytes(1 << 20);
    oversize(&small, &big, "mem://small").await;
}

// ---- hostile peers ---------------------------------------------------------------------------

/// Writes `bytes` on a plain blocking socket, half-closes it, and returns everything the listener sends back
/// before closing (on a blocking thread, so the runtime keeps serving).
async fn std_client(addr: String, bytes: Vec<u8>) -> Vec<u8> {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&bytes).unwrap();
        // Hang up our side: a listener waiting for more must notice, not wait for a timeout.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        back
    })
    .await
    .unwrap()
}

/// Splits what a listener sent into frames.
fn frames_of(mut bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(decode_body(&bytes[4..4 + len]).unwrap());
        bytes = &bytes[4 + len..];
    }
    out
}

fn last_error_code(frames: &[Message]) -> Option<ErrorCode> {
    match frames.last() {
        Some(Message::Error { code, .. }) => Some(*code),
        _ => None,
    }
}

#[actix_rt::test]
async fn tcp_listener_survives_garbage_and_huge_headers() {
    let t = TcpTransport::default();
    let (lsink, mut lev, _la) = collector();
    let bound = t
        .listen("127.0.0.1:0", master_hello(), lsink)
        .await
        .unwrap();

    // "GET " read as a length is ~1.2 GB: refused from the header.
    let back = std_client(bound.clone(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
    assert_eq!(
        last_error_code(&frames_of(&back)),
        Some(ErrorCode::TooLarge)
    );
    let back = std_client(bound.clone(), vec![0xff, 0xff, 0xff, 0xff]).await;
    assert_eq!(
        last_error_code(&frames_of(&back)),
        Some(ErrorCode::TooLarge)
    );
    // A plausible length with an undecodable body.
    let back = std_client(bound.clone(), vec![0, 0, 0, 8, 0xff, 1, 2, 3, 4, 5, 6, 7]).await;
    assert_eq!(
        last_error_code(&frames_of(&back)),
        Some(ErrorCode::BadRequest)
    );
    // Connect and hang up at once.
    std_client(bound.clone(), vec![]).await;
    lev.quiet_for(50).await;

    // A good hello followed by garbage: the owner sees the connection come and go.
    let mut bytes = encode_frame(&Message::Hello(agent_hello()), 1 << 20).unwrap();
    bytes.extend_from_slice(&[0, 0, 0, 3, 0xfe, 0xfe, 0xfe]);
    let back = std_client(bound.clone(), bytes).await;
    assert_eq!(
        last_error_code(&frames_of(&back)),
        Some(ErrorCode::BadRequest)
    );
    let (conn, _, _) = lev.connected().await;
    let reason = lev.closed(conn).await;
    assert!(reason.contains("decode"), "{reason}");

    // Still serving real clients.
    let (dsink, mut dev, _da) = collector();
    let link = t.connect(vec![bound], agent_hello(), FAST, dsink);
    let (lc, _, _) = lev.connected().await;
    let (dc, _, _) = dev.connected().await;
    link.send(Message::Ping).unwrap();
    assert_eq!(lev.frame(lc).await, Message::Ping);
    link.close();
    dev.closed(dc).await;
}

#[actix_rt::test]
async fn mem_listener_survives_garbage_and_second_hello() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = MemTransport::default();
    let (lsink, mut lev, _la) = collector();
    let bound = t.listen("mem://m", master_hello(), lsink).await.unwrap();
    for garbage in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0, 0, 0, 2, 0xff, 0xff],
    ] {
        let mut s = t.connect_raw(&bound).unwrap();
        s.write_all(&garbage).await.unwrap();
        let mut back = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert!(last_error_code(&frames_of(&back)).is_some(), "{back:?}");
    }
    lev.quiet_for(50).await;

    // A second hello after the handshake is a protocol violation.
    let frames = {
        let (r, w) = tokio::io::split(t.connect_raw(&bound).unwrap());
        let mut reader = FramedRead::new(r, FrameCodec::new(1 << 20));
        let mut writer = FramedWrite::new(w, FrameCodec::new(1 << 20));
        writer.send(Message::Hello(agent_hello())).await.unwrap();
        writer.send(Message::Ping).await.unwrap();
        writer.send(Message::Hello(agent_hello())).await.unwrap();
        let mut got = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, reader.next()).await {
            got.push(m);
        }
        got
    };
    assert_eq!(last_error_code(&frames), Some(ErrorCode::BadRequest));
    let (conn, _, _) = lev.connected().await;
    assert_eq!(lev.frame(conn).await, Message::Ping);
    assert!(lev.closed(conn).await.contains("unexpected hello"));
}

// ---- redial --------------------------------------------------------------------------------

/// The listener's owner drops the connection; the link notices and dials again.
async fn redial_after_listener_closes(t: &dyn Transport, addr: &str) {
    let mut p = pair(t, t, addr).await;
    p.l_handle
        .close(Some(Message::fatal(ErrorCode::Internal, "go away")));
    assert_eq!(p.lev.closed(p.l_conn).await, "closed locally");
    assert!(matches!(
        p.dev.frame(p.d_conn).await,
        Message::Error {
            code: ErrorCode::Internal,
            ..
        }
    ));
    p.dev.closed(p.d_conn).await;
    assert_eq!(
        p.link.send(Message::Ping),
        Err(TransportError::NotConnected)
    );
    let (l2, _, _) = p.lev.connected().await;
    let (d2, _, _) = p.dev.connected().await;
    assert!(
        l2 != p.l_conn && d2 != p.d_conn,
        "a redial is a new connection"
    );
    p.link.send(Message::Ping).unwrap();
    assert_eq!(p.lev.frame(l2).await, Message::Ping);
}

#[actix_rt::test]
async fn tcp_link_redials_after_listener_closes() {
    redial_after_listener_closes(&TcpTransport::default(), "127.0.0.1:0").await;
}

#[actix_rt::test]
async fn mem_link_redials_after_listener_closes() {
    redial_after_listener_closes(&MemTransport::default(), "mem://master").await;
}

/// A link to an address nobody listens on yet keeps retrying, and connects once a listener
/// appears. Until then `send` says `NotConnected`.
async fn listener_starts_late(t: &dyn Transport, addr: &str) {
    let (dsink, mut dev, _da) = collector();
    let link = t.connect(vec![addr.to_string()], agent_hello(), FAST, dsink);
    assert_eq!(link.send(Message::Ping), Err(TransportError::NotConnected));
    dev.quiet_for(300).await; // several failed dials, reported to no one
    assert_eq!(link.send(Message::Ping), Err(TransportError::NotConnected));
    let (lsink, mut lev, _la) = collector();
    let bound = t.listen(addr, master_hello(), lsink).await.unwrap();
    assert_eq!(bound, addr);
    let (lc, _, _) = lev.connected().await;
    let (dc, peer, _) = dev.connected().await;
    assert_eq!(peer.node_kind, NodeKind::Master);
    link.send(Message::Ping).unwrap();
    assert_eq!(lev.frame(lc).await, Message::Ping);
    link.close();
    dev.closed(dc).await;
}

#[actix_rt::test]
async fn tcp_link_connects_when_listener_starts_late() {
    // Find a free port, release it, and dial it before anyone listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    listener_starts_late(&TcpTransport::default(), &format!("127.0.0.1:{port}")).await;
}

#[actix_rt::test]
async fn mem_link_connects_when_listener_starts_late() {
    listener_starts_late(&MemTransport::default(), "mem://late").await;
}

/// Several addresses: dead ones are skipped, the live one is used.
#[actix_rt::test]
async fn link_tries_addresses_in_turn() {
    let t = MemTransport::default();
    let (lsink, mut lev, _la) = collector();
    let bound = t.listen("mem://b", master_hello(), lsink).await.unwrap();
    let (dsink, mut dev, _da) = collector();
    let addrs = vec!["mem://a".to_string(), bound, "mem://c".to_string()];
    let link = t.connect(addrs, agent_hello(), FAST, dsink);
    lev.connected().await;
    dev.connected().await;
    drop(link);
}

// ---- listener lifecycle ------------------------------------------------------------------

#[actix_rt::test]
async fn mem_address_in_use_until_owner_stops() {
    let t = MemTransport::default();
    let (lsink, _lev, la) = collector();
    t.listen("mem://x", master_hello(), lsink).await.unwrap();
    let (sink2, _ev2, _a2) = collector();
    assert!(matches!(
        t.listen("mem://x", master_hello(), sink2.clone()).await,
        Err(TransportError::Listen { .. })
    ));
    assert!(matches!(
        t.listen("", master_hello(), sink2.clone()).await,
        Err(TransportError::BadAddress(_))
    ));
    // Port 0 picks distinct free addresses.
    let a = t
        .listen("mem://h:0", master_hello(), sink2.clone())
        .await
        .unwrap();
    let b = t
        .listen("mem://h:0", master_hello(), sink2.clone())
        .await
        .unwrap();
    assert_ne!(a, b);
    assert!(a.starts_with("mem://h:") && !a.ends_with(":0"), "{a}");

    // Once the first owner is gone, its listener stops and frees the address.
    la.do_send(Stop);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match t.listen("mem://x", master_hello(), sink2.clone()).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("address never freed: {e}"),
        }
    }
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct Stop;

impl Handler<Stop> for Collector {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        use actix::ActorContext;
        ctx.stop();
    }
}

#[actix_rt::test]
async fn tcp_listen_reports_bad_addresses() {
    let (sink, _ev, _a) = collector();
    let t = TcpTransport::default();
    assert!(matches!(
        t.listen("not an address", master_hello(), sink.clone())
            .await,
        Err(TransportError::Listen { .. })
    ));
    let bound = t
        .listen("127.0.0.1:0", master_hello(), sink.clone())
        .await
        .unwrap();
    assert!(
        bound.starts_with("127.0.0.1:") && !bound.ends_with(":0"),
        "{bound}"
    );
    assert!(matches!(
        t.listen(&bound, master_hello(), sink).await,
        Err(TransportError::Listen { .. })
    ));
}
