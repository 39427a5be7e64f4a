//! The wire codec: bincode (serde) behind one module, so swapping it stays a one-file change.
//!
//! Frame format: a 4-byte big-endian body length, then the bincode encoding of one `Message`.
//! Input is untrusted: the length header is checked against the frame limit before anything is
//! buffered, and bincode runs with an allocation limit so a small frame cannot claim gigabytes
//! through a forged container length.

use crate::messages::Message;
use bincode::config::{self, Configuration, Limit};
use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes of the length prefix.
pub const LEN_PREFIX_BYTES: usize = 4;

/// Upper bound on what bincode may allocate while decoding one frame. Decoded values can be
/// bigger than their encoding (a one-byte varint becomes an eight-byte integer), so this is a
/// multiple of the default frame limit rather than equal to it. It is a compile-time constant
/// because bincode takes the limit as a type parameter.
pub const DECODE_LIMIT_BYTES: usize = 8 * crate::transport::DEFAULT_MAX_FRAME_BYTES;

type WireConfig = Configuration<config::LittleEndian, config::Varint, Limit<DECODE_LIMIT_BYTES>>;

/// bincode's standard layout (little-endian varints) with the allocation limit.
fn wire_config() -> WireConfig {
    config::standard().with_limit::<DECODE_LIMIT_BYTES>()
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("cannot decode frame: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as a complete frame (length prefix included), refusing frames whose body is
/// above `max_bytes` (or above what the 4-byte prefix can express).
pub fn encode_frame(msg: &Message, max_bytes: usize) -> Result<Vec<u8>, CodecError> {
    let body = encode_body(msg)?;
    let len = check_len(body.len(), max_bytes)?;
    let mut frame = Vec::with_capacity(LEN_PREFIX_BYTES + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Decodes one frame body (without its length prefix). Trailing bytes are an error: a body that
/// does not end where its length says was produced by a confused or hostile peer.
pub fn decode_body(body: &[u8]) -> Result<Message, CodecError> {
    let (msg, used): (Message, usize) = bincode::serde::decode_from_slice(body, wire_config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after a {} message",
            body.len() - used,
            msg.kind()
        )));
    }
    Ok(msg)
}

/// Encodes any serde value with the wire layout: for state a node persists itself (the agent's
/// checkpoint), so every bincode call stays in this module.
pub fn encode_value<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, wire_config())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes what [`encode_value`] wrote, with the same allocation limit; trailing bytes are an
/// error (a torn or foreign record).
pub fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used): (T, usize) = bincode::serde::decode_from_slice(bytes, wire_config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}

fn encode_body(msg: &Message) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(msg, wire_config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// The body length as the 4-byte prefix value, if it is within `max_bytes`.
fn check_len(len: usize, max_bytes: usize) -> Result<u32, CodecError> {
    let max = max_bytes.min(u32::MAX as usize);
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    // Cannot fail: `len <= max <= u32::MAX`.
    u32::try_from(len).map_err(|_| CodecError::TooLarge { len, max })
}

/// `tokio_util` framing of `Message`s for byte streams (TCP sockets, in-memory pipes).
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    pub max_frame_bytes: usize,
}

impl FrameCodec {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameCodec { max_frame_bytes }
    }
}

impl Decoder for FrameCodec {
    type Item = Message;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        if src.len() < LEN_PREFIX_BYTES {
            return Ok(None);
        }
        let mut prefix = [0u8; LEN_PREFIX_BYTES];
        prefix.copy_from_slice(&src[..LEN_PREFIX_BYTES]);
        let len = u32::from_be_bytes(prefix) as usize;
        // Refuse from the header alone: never buffer a body we would refuse anyway.
        if len > self.max_frame_bytes {
            return Err(CodecError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let total = LEN_PREFIX_BYTES + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(LEN_PREFIX_BYTES);
        let body = src.split_to(len);
        decode_body(&body).map(Some)
    }
}

impl Encoder<Message> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        // Nothing is written to `dst` unless the whole frame is valid, so a refused message
        // leaves the stream intact and the connection usable.
        let body = encode_body(&msg)?;
        let len = check_len(body.len(), self.max_frame_bytes)?;
        dst.reserve(LEN_PREFIX_BYTES + body.len());
        dst.put_u32(len);
        dst.put_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::*;
    use crate::messages::*;
    use crate::resources::Resources;

    fn task(id: &str) -> TaskInfo {
        TaskInfo {
            container: None,
            task_id: TaskId::new(id).unwrap(),
            name: format!("task {id}"),
            agent_id: AgentId::new("agent-1").unwrap(),
            resources: Resources::parse("cpus:0.5;mem:128;ports:[31000-31001]").unwrap(),
            command: Some(CommandInfo::shell("echo hi")),
            executor: Some(ExecutorInfo {
                executor_id: ExecutorId::new("ex-1").unwrap(),
                name: "ex".into(),
                command: Some(CommandInfo::argv(&["/bin/true".to_string()])),
                resources: Resources::parse("cpus:0.1;zones:{a,b}").unwrap(),
            }),
            data: vec![0, 1, 2, 255],
        }
    }

    /// One message of every variant, with non-trivial field values.
    fn every_variant() -> Vec<Message> {
        let fw = FrameworkId::new("fw-1").unwrap();
        let ag = AgentId::new("agent-1").unwrap();
        let ex = ExecutorId::new("ex-1").unwrap();
        let tid = TaskId::new("t-1").unwrap();
        let offer = OfferId::new("o-1").unwrap();
        let info = FrameworkInfo::new("batch");
        let res = Resources::parse("cpus:4;mem:4096;cpus(ads):2").unwrap();
        let attrs = parse_attributes("rack:r1;zone:a").unwrap();
        let mut status = TaskStatus::new(tid.clone(), TaskState::Running, UpdateSource::Executor)
            .with_reason("started", "it runs");
        status.uuid = Some(u64::MAX);
        status.exit_code = Some(-1);
        let report = TaskReport {
            framework_id: fw.clone(),
            executor_id: ex.clone(),
            task: task("t-2"),
            state: TaskState::Staging,
        };
        let filters = Filters {
            refuse_seconds: 0.25,
        };
        vec![
            Message::Hello(Hello::new("prod", NodeKind::Agent, "host:5051")),
            Message::RegisterAgent {
                hostname: "h".into(),
                endpoint: "h:5051".into(),
                resources: res.clone(),
                attributes: attrs.clone(),
            },
            Message::ReregisterAgent {
                agent_id: ag.clone(),
                hostname: "h".into(),
                endpoint: "h:5051".into(),
                resources: res.clone(),
                attributes: attrs,
                tasks: vec![report],
                frameworks: vec![info.clone()],
            },
            Message::AgentRegistered {
                agent_id: ag.clone(),
                ping_interval_ms: 15_000,
            },
            Message::Ping,
            Message::Pong,
            Message::RunTask {
                framework: info.clone(),
                task: task("t-3"),
            },
            Message::KillTask {
                framework_id: fw.clone(),
                task_id: tid.clone(),
                grace_ms: 3_000,
            },
            Message::StatusUpdate {
                framework_id: fw.clone(),
                status: status.clone(),
            },
            Message::StatusUpdateAck {
                framework_id: fw.clone(),
                task_id: tid.clone(),
                uuid: 7,
            },
            Message::ShutdownFramework {
                framework_id: fw.clone(),
            },
            Message::FrameworkToExecutor {
                framework_id: fw.clone(),
                executor_id: ex.clone(),
                agent_id: ag.clone(),
                data: vec![9; 300],
            },
            Message::ExecutorToFramework {
                framework_id: fw.clone(),
                executor_id: ex.clone(),
                agent_id: ag.clone(),
                data: vec![],
            },
            Message::Subscribe {
                framework: info.clone(),
            },
            Message::SubscribeStandby {
                framework: info.clone(),
            },
            Message::StandingBy {
                framework_id: fw.clone(),
                message: "standing by".into(),
            },
            Message::Accept {
                framework_id: fw.clone(),
                offer_ids: vec![offer.clone()],
                operations: vec![Operation::Launch {
                    tasks: vec![task("t-4")],
                }],
                filters,
            },
            Message::Decline {
                framework_id: fw.clone(),
                offer_ids: vec![offer.clone()],
                filters: Filters::default(),
            },
            Message::Revive {
                framework_id: fw.clone(),
            },
            Message::Suppress {
                framework_id: fw.clone(),
            },
            Message::Kill {
                framework_id: fw.clone(),
                task_id: tid.clone(),
                agent_id: None,
            },
            Message::Acknowledge {
                framework_id: fw.clone(),
                agent_id: ag.clone(),
                task_id: tid.clone(),
                uuid: 1,
            },
            Message::Reconcile {
                framework_id: fw.clone(),
                tasks: vec![(tid.clone(), Some(ag.clone())), (tid.clone(), None)],
            },
            Message::Teardown {
                framework_id: fw.clone(),
            },
            Message::Subscribed {
                framework_id: fw.clone(),
                heartbeat_interval_ms: 15_000,
            },
            Message::Offers {
                offers: vec![Offer {
                    id: offer.clone(),
                    framework_id: fw.clone(),
                    agent_id: ag.clone(),
                    hostname: "h".into(),
                    resources: res,
                    attributes: Attributes::new(),
                    executor_ids: vec![ex.clone()],
                }],
            },
            Message::Rescind { offer_id: offer },
            Message::Update { status },
            Message::AgentLost {
                agent_id: ag.clone(),
            },
            Message::Heartbeat,
            Message::RegisterExecutor {
                framework_id: fw,
                executor_id: ex.clone(),
            },
            Message::ExecutorRegistered {
                agent_id: ag,
                framework: info,
                executor: ExecutorInfo {
                    executor_id: ex,
                    name: "e".into(),
                    command: None,
                    resources: Resources::new(),
                },
            },
            Message::ShutdownExecutor { grace_ms: 5 },
            Message::fatal(ErrorCode::ClusterMismatch, "cluster \"a\" vs \"b\""),
        ]
    }

    #[test]
    fn every_variant_round_trips_through_frame_and_codec() {
        let all = every_variant();
        let kinds: std::collections::BTreeSet<_> = all.iter().map(Message::kind).collect();
        assert_eq!(kinds.len(), all.len(), "one sample per variant");
        let mut codec = FrameCodec::new(1 << 20);
        let mut stream = BytesMut::new();
        for msg in &all {
            let frame = encode_frame(msg, 1 << 20).unwrap();
            let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len + LEN_PREFIX_BYTES, frame.len());
            assert_eq!(&decode_body(&frame[4..]).unwrap(), msg);
            // The streaming codec must produce byte-identical frames.
            let mut buf = BytesMut::new();
            codec.encode(msg.clone(), &mut buf).unwrap();
            assert_eq!(&buf[..], &frame[..]);
            stream.extend_from_slice(&frame);
        }
        // All frames back to back, fed one byte at a time, decode in order.
        let mut fed = BytesMut::new();
        let mut out = Vec::new();
        for b in stream {
            fed.put_u8(b);
            while let Some(m) = codec.decode(&mut fed).unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, all);
        assert!(fed.is_empty());
    }

    #[test]
    fn truncated_and_garbage_bodies_are_errors_not_panics() {
        for msg in every_variant() {
            let frame = encode_frame(&msg, 1 << 20).unwrap();
            let body = &frame[4..];
            for cut in 0..body.len() {
                assert!(
                    decode_body(&body[..cut]).is_err(),
                    "{} cut at {cut}",
                    msg.kind()
                );
            }
            let mut longer = body.to_vec();
            longer.push(0);
            assert!(matches!(decode_body(&longer), Err(CodecError::Decode(_))));
        }
        // Deterministic pseudo-random garbage (xorshift), many lengths.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for len in 0..2_000usize {
            let bytes: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_body(&bytes); // must return, whatever it returns
        }
        assert!(decode_body(&[0xff; 16]).is_err());
    }

    #[test]
    fn forged_container_length_is_refused_without_allocating() {
        // Variant 11 (FrameworkToExecutor) starts with a string: claim 2^62 bytes for it
        // (varint marker 253 = a u64 follows). Only a few bytes actually follow.
        let mut body = vec![11u8, 253];
        body.extend_from_slice(&(1u64 << 62).to_le_bytes());
        body.extend_from_slice(b"abc");
        let err = decode_body(&body).unwrap_err();
        assert!(matches!(err, CodecError::Decode(_)), "{err}");
        // Same for the opaque byte vector further in: three valid ids, then a huge length.
        let mut body = vec![11u8];
        for id in ["f", "e", "a"] {
            body.push(1);
            body.extend_from_slice(id.as_bytes());
        }
        body.push(253);
        body.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let err = decode_body(&body).unwrap_err();
        assert!(matches!(err, CodecError::Decode(_)), "{err}");
    }

    #[test]
    fn hostile_ranges_decode_and_stay_panic_free() {
        use crate::resources::Ranges;
        // `Ranges` is a serde newtype over its spans, so a peer can send any spans at all:
        // unsorted, overlapping, upside down, touching u64::MAX.
        let spans: Vec<(u64, u64)> = vec![(10, 20), (1, 5), (9, 3), (15, 30), (u64::MAX, 0)];
        let bytes = bincode::serde::encode_to_vec(&spans, wire_config()).unwrap();
        let (r, _): (Ranges, usize) =
            bincode::serde::decode_from_slice(&bytes, wire_config()).unwrap();
        let full = Ranges::new(vec![(0, u64::MAX)]);
        // None of these may panic, whatever they return.
        let _ = (r.count(), r.take(u64::MAX), r.take(7), r.union(&full));
        let _ = (
            r.difference(&full),
            full.difference(&r),
            r.contains(&full),
            full.contains(&r),
        );
        assert!(r.count() >= 16);
    }

    #[test]
    fn oversize_frames_are_refused_both_ways() {
        let big = Message::FrameworkToExecutor {
            framework_id: FrameworkId::new("f").unwrap(),
            executor_id: ExecutorId::new("e").unwrap(),
            agent_id: AgentId::new("a").unwrap(),
            data: vec![7; 10_000],
        };
        assert!(matches!(
            encode_frame(&big, 1_000),
            Err(CodecError::TooLarge { max: 1_000, .. })
        ));
        let mut small = FrameCodec::new(1_000);
        assert!(matches!(
            small.encode(big.clone(), &mut BytesMut::new()),
            Err(CodecError::TooLarge { .. })
        ));
        // The decoder refuses from the 4-byte header alone, before the body arrives.
        let mut header_only = BytesMut::from(&(1_001u32).to_be_bytes()[..]);
        assert!(matches!(
            small.decode(&mut header_only),
            Err(CodecError::TooLarge {
                len: 1_001,
                max: 1_000
            })
        ));
        let mut huge = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(matches!(
            FrameCodec::new(crate::transport::DEFAULT_MAX_FRAME_BYTES).decode(&mut huge),
            Err(CodecError::TooLarge { .. })
        ));
        // Exactly at the limit is fine.
        let frame = encode_frame(&Message::Ping, 1 << 20).unwrap();
        let exact = frame.len() - LEN_PREFIX_BYTES;
        assert!(encode_frame(&Message::Ping, exact).is_ok());
        assert!(encode_frame(&Message::Ping, exact - 1).is_err());
    }

    #[test]
    fn partial_header_and_body_wait_for_more_bytes() {
        let frame = encode_frame(&Message::Heartbeat, 64).unwrap();
        let mut codec = FrameCodec::new(64);
        let mut buf = BytesMut::from(&frame[..2]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        let mut buf = BytesMut::from(&frame[..frame.len() - 1]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.put_u8(frame[frame.len() - 1]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Message::Heartbeat));
    }
}
