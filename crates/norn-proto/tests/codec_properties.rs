//! Round trips of every message, and decoding of hostile input: random and
//! mutated frames never panic and never allocate past the codec's limit.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use norn_clock::{ActorId, Context, Object, Sibling};
use norn_membership::{ChangeKind, GossipMessage, Member, MemberState, StagedChange};
use norn_proto::codec::{self, DECODE_LIMIT_BYTES};
use norn_proto::{
    encode_frame, ErrorCode, ErrorReply, FrameDecoder, GetReply, KeyDigest, KeyObject, KeyRef,
    MemberInfo, PartitionVerified, PlanNode, PlanView, ProtoError, PutReply, QuorumOptions,
    RepairProgress, Request, Response, TransferState, TransferView, WriteReceipt,
};
use norn_ring::{NodeId, Partition, Ring, RingMember, RingProof};
use proptest::prelude::*;

/// Counts the largest single allocation, to bound what decoding asks for.
struct LargestAllocation;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

fn objects() -> impl Strategy<Value = Object> {
    let sibling = prop_oneof![bytes().prop_map(Sibling::Value), Just(Sibling::Tombstone)];
    prop::collection::vec((0u64..4, sibling), 0..6).prop_map(|writes| {
        writes
            .into_iter()
            .fold(Object::new(), |object, (actor, value)| {
                let context = if actor % 2 == 0 {
                    object.context()
                } else {
                    Context::default()
                };
                object.update(&context, ActorId::new(actor, 1), value)
            })
    })
}

fn members() -> impl Strategy<Value = Member> {
    (
        any::<u64>(),
        ".{0,8}",
        ".{0,20}",
        any::<u32>(),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(id, name, zone, weight, leaving, incarnation, heartbeat)| Member {
                id: NodeId(id),
                address: format!("{name}:7000"),
                name,
                zone,
                weight,
                state: if leaving {
                    MemberState::Leaving
                } else {
                    MemberState::Active
                },
                incarnation,
                heartbeat,
                handoffs: vec![Partition(weight as u16)],
                proof: None,
            },
        )
}

fn quorum_options() -> impl Strategy<Value = QuorumOptions> {
    any::<[Option<u8>; 6]>().prop_map(|[n, r, w, pr, pw, dw]| QuorumOptions {
        n,
        r,
        w,
        pr,
        pw,
        dw,
    })
}

fn receipts() -> impl Strategy<Value = WriteReceipt> {
    (
        any::<u8>(),
        prop::collection::vec(any::<u64>(), 0..4),
        prop::collection::vec(any::<(u64, u64)>(), 0..3),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(
            |(sent, primaries, fallbacks, synced, quorum_met)| WriteReceipt {
                sent,
                primaries: primaries.into_iter().map(NodeId).collect(),
                fallbacks: fallbacks
                    .into_iter()
                    .map(|(f, p)| (NodeId(f), NodeId(p)))
                    .collect(),
                synced,
                quorum_met,
            },
        )
}

fn kinds() -> impl Strategy<Value = ChangeKind> {
    prop_oneof![
        Just(ChangeKind::Join),
        Just(ChangeKind::Leave),
        Just(ChangeKind::Remove)
    ]
}

fn staged() -> impl Strategy<Value = StagedChange> {
    (
        any::<u64>(),
        kinds(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(node, kind, base, stamp, by)| StagedChange {
            node: NodeId(node),
            kind,
            base_version: base,
            stamp,
            staged_by: NodeId(by),
        })
}

fn rings() -> impl Strategy<Value = Ring> {
    (
        4u8..=6,
        prop::collection::btree_set(any::<u64>(), 1..6),
        prop::collection::vec(any::<[u8; 32]>(), 0..3),
        prop::option::of((bytes(), any::<u64>(), bytes())),
    )
        .prop_map(|(bits, ids, revoked, proof)| {
            let members = ids.into_iter().map(|id| {
                (
                    NodeId(id),
                    RingMember {
                        zone: format!("z{}", id % 3),
                        weight: 1,
                    },
                )
            });
            let ring = Ring::new(bits, members)
                .and_then(|ring| ring.with_revoked(revoked))
                .expect("ring");
            match proof {
                Some((signer, signed_at, signature)) => ring.with_proof(RingProof {
                    signer,
                    signed_at,
                    signature,
                }),
                None => ring,
            }
        })
}

fn gossip() -> impl Strategy<Value = GossipMessage> {
    prop_oneof![
        (
            any::<u64>(),
            prop::collection::vec(members(), 0..4),
            prop::collection::vec(staged(), 0..3),
            any::<(u64, u64)>()
        )
            .prop_map(|(from, members, staged, (v, f))| GossipMessage::Digest {
                from: NodeId(from),
                members,
                staged,
                ring_version: v,
                ring_fingerprint: f,
            }),
        any::<u64>().prop_map(|from| GossipMessage::RingPull { from: NodeId(from) }),
        (any::<u64>(), rings()).prop_map(|(from, ring)| GossipMessage::RingPush {
            from: NodeId(from),
            ring
        }),
    ]
}

fn key_refs() -> impl Strategy<Value = KeyRef> {
    (bytes(), bytes()).prop_map(|(bucket, key)| KeyRef { bucket, key })
}

fn key_digests() -> impl Strategy<Value = KeyDigest> {
    (key_refs(), any::<u64>()).prop_map(|(key, digest)| KeyDigest { key, digest })
}

/// The requests of anti-entropy, transfers and repair.
fn convergence_requests() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u32>(), 0..8)
        )
            .prop_map(|(p, n, level, indices)| Request::TreeNodes {
                partition: Partition(p),
                n,
                level,
                indices
            }),
        (
            any::<u16>(),
            any::<u8>(),
            prop::collection::vec(any::<u32>(), 0..8)
        )
            .prop_map(|(p, n, segments)| Request::SegmentDigests {
                partition: Partition(p),
                n,
                segments
            }),
        (
            prop::collection::vec(key_refs(), 0..4),
            prop::option::of(rings())
        )
            .prop_map(|(keys, admission)| Request::KeyDigests {
                keys,
                admission: admission.map(Box::new)
            }),
        prop::collection::vec(key_refs(), 0..4).prop_map(|keys| Request::ReplicaGetMany { keys }),
        (
            any::<u8>(),
            prop::collection::vec((key_refs(), objects()), 0..3)
        )
            .prop_map(|(n, items)| Request::ReplicaPutMany {
                n,
                ring_version: u64::from(n) * 7,
                items: items
                    .into_iter()
                    .map(|(key, object)| KeyObject { key, object })
                    .collect(),
                admission: None,
            }),
        prop::collection::vec(key_digests(), 0..4).prop_map(|items| Request::Reap { items }),
        prop::option::of(any::<u16>()).prop_map(|p| Request::AdminRepair {
            partition: p.map(Partition)
        }),
        Just(Request::AdminRepairProgress),
        Just(Request::AdminRepairStatus),
        Just(Request::AdminTransfers),
    ]
}

/// The replies of anti-entropy, transfers and repair.
fn convergence_responses() -> impl Strategy<Value = Response> {
    prop_oneof![
        prop::collection::vec(any::<u128>(), 0..8).prop_map(Response::Hashes),
        (
            prop::collection::vec(any::<u32>(), 0..4),
            prop::collection::vec(key_digests(), 0..4)
        )
            .prop_map(|(segments, digests)| Response::SegmentDigests { segments, digests }),
        prop::collection::vec(any::<Option<u64>>(), 0..4).prop_map(Response::KeyDigests),
        prop::collection::vec(prop::option::of(objects()), 0..3).prop_map(Response::Objects),
        any::<u32>().prop_map(|count| Response::StoredMany { count }),
        (any::<bool>(), any::<[u32; 3]>(), any::<[u64; 5]>()).prop_map(
            |(running, [a, b, c], [d, e, f, g, h])| Response::Repair(RepairProgress {
                running,
                partitions_total: a,
                partitions_done: b,
                exchanges_failed: c,
                keys_compared: d,
                keys_different: e,
                keys_repaired: f,
                bytes: g,
                elapsed_ms: h,
            })
        ),
        prop::collection::vec((any::<u16>(), any::<Option<u64>>()), 0..4).prop_map(|rows| {
            Response::RepairStatus(
                rows.into_iter()
                    .map(|(p, ago_ms)| PartitionVerified {
                        partition: Partition(p),
                        ago_ms,
                    })
                    .collect(),
            )
        }),
        prop::collection::vec(
            (
                any::<u16>(),
                any::<u8>(),
                any::<[u64; 3]>(),
                any::<bool>(),
                ".{0,10}"
            ),
            0..3
        )
        .prop_map(|rows| Response::Transfers(
            rows.into_iter()
                .map(
                    |(p, n, [keys_sent, bytes_sent, keys_left], resumed, why)| TransferView {
                        partition: Partition(p),
                        n,
                        targets: vec![NodeId(u64::from(n))],
                        keys_sent,
                        bytes_sent,
                        keys_left,
                        resumed,
                        state: match keys_sent % 3 {
                            0 => TransferState::Running,
                            1 => TransferState::Waiting(why),
                            _ => TransferState::Done,
                        },
                    }
                )
                .collect()
        )),
    ]
}

fn requests() -> impl Strategy<Value = Request> {
    prop_oneof![
        convergence_requests(),
        gossip().prop_map(Request::Gossip),
        Just(Request::AdminMembers),
        Just(Request::AdminRing),
        ".{0,30}".prop_map(|seed| Request::AdminJoin { seed }),
        (".{0,30}", kinds()).prop_map(|(node, kind)| Request::AdminStage { node, kind }),
        Just(Request::AdminPlan),
        prop::collection::vec(any::<[u8; 32]>(), 0..3)
            .prop_map(|revoke| Request::AdminPropose { revoke }),
        rings().prop_map(|ring| Request::AdminCommit { ring }),
        Just(Request::AdminHints),
        (bytes(), bytes(), quorum_options(), any::<Option<u64>>()).prop_map(
            |(bucket, key, options, timeout_ms)| {
                Request::Get {
                    bucket,
                    key,
                    options,
                    timeout_ms,
                }
            }
        ),
        (
            bytes(),
            bytes(),
            prop::option::of(bytes()),
            objects(),
            quorum_options(),
            any::<Option<u64>>(),
            any::<bool>()
        )
            .prop_map(
                |(bucket, key, value, object, options, timeout_ms, forwarded)| Request::Put {
                    bucket,
                    key,
                    value,
                    context: Some(object.context()),
                    options,
                    timeout_ms,
                    forwarded,
                }
            ),
        Just(Request::Ping),
        (bytes(), bytes()).prop_map(|(bucket, key)| Request::ReplicaGet { bucket, key }),
        (
            bytes(),
            bytes(),
            any::<u8>(),
            objects(),
            any::<Option<u64>>(),
            any::<bool>()
        )
            .prop_map(|(bucket, key, n, object, hint, sync)| Request::ReplicaPut {
                bucket,
                key,
                n,
                object,
                hint_for: hint.map(NodeId),
                sync,
            }),
    ]
}

fn responses() -> impl Strategy<Value = Response> {
    let code = prop_oneof![
        Just(ErrorCode::BadRequest),
        Just(ErrorCode::Storage),
        Just(ErrorCode::Unavailable)
    ];
    prop_oneof![
        convergence_responses(),
        Just(Response::Pong),
        prop::option::of(objects()).prop_map(|object| Response::Replica { object }),
        any::<bool>().prop_map(|synced| Response::Stored { synced }),
        (code, ".{0,40}").prop_map(|(code, message)| Response::Error(ErrorReply { code, message })),
        Just(Response::Ack),
        rings().prop_map(|ring| Response::Proposed(Box::new(ring))),
        prop::collection::vec((members(), any::<bool>(), 0.0f64..1e6), 0..4).prop_map(|views| {
            Response::Members(
                views
                    .into_iter()
                    .map(|(member, up, phi)| MemberInfo { member, up, phi })
                    .collect(),
            )
        }),
        prop::option::of(rings()).prop_map(|ring| Response::Ring(ring.map(Box::new))),
        (
            any::<u64>(),
            prop::collection::vec(staged(), 0..3),
            prop::collection::vec((any::<u64>(), ".{0,8}", any::<[u32; 4]>()), 0..4),
            any::<u8>(),
            any::<u32>(),
            prop::option::of(".{0,20}")
        )
            .prop_map(
                |(current_version, staged, nodes, n, zone_violations, refusal)| Response::Plan(
                    PlanView {
                        current_version,
                        staged,
                        nodes: nodes
                            .into_iter()
                            .map(|(id, name, [a, b, c, d])| PlanNode {
                                id: NodeId(id),
                                name,
                                owned_now: a,
                                owned_after: b,
                                gained: c,
                                lost: d,
                            })
                            .collect(),
                        n,
                        zone_violations,
                        refusal,
                    }
                )
            ),
        any::<u64>().prop_map(|version| Response::Committed { version }),
        staged().prop_map(Response::Staged),
        (objects(), any::<u8>(), prop::option::of(".{0,20}")).prop_map(
            |(object, replies, warning)| {
                Response::Value(GetReply {
                    siblings: object.values().cloned().collect(),
                    context: object.context(),
                    replies,
                    warning,
                })
            }
        ),
        (
            receipts(),
            objects(),
            any::<u32>(),
            prop::option::of(".{0,20}")
        )
            .prop_map(|(receipt, object, siblings, warning)| {
                Response::Written(PutReply {
                    receipt,
                    context: object.context(),
                    siblings,
                    warning,
                })
            }),
        (receipts(), ".{0,40}")
            .prop_map(|(receipt, message)| Response::WriteFailed { receipt, message }),
        prop::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..4).prop_map(
            |queues| Response::Hints(
                queues
                    .into_iter()
                    .map(|(t, h, b)| (NodeId(t), h, b))
                    .collect()
            )
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn requests_round_trip(request in requests(), id in any::<u64>()) {
        let frame = encode_frame(id, &request).expect("encode");
        let (decoded, used) = FrameDecoder::new(1 << 20).decode(&frame).expect("decode").expect("whole");
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(decoded.request_id, id);
        prop_assert_eq!(decoded.decode::<Request>().expect("payload"), request);
    }

    #[test]
    fn responses_round_trip(response in responses(), id in any::<u64>()) {
        let frame = encode_frame(id, &response).expect("encode");
        let (decoded, _) = FrameDecoder::new(1 << 20).decode(&frame).expect("decode").expect("whole");
        prop_assert_eq!(decoded.decode::<Response>().expect("payload"), response);
    }

    /// A frame cut short is incomplete, never an error or a wrong frame.
    #[test]
    fn partial_frames_wait_for_more(request in requests(), cut in any::<prop::sample::Index>()) {
        let frame = encode_frame(7, &request).expect("encode");
        let cut = cut.index(frame.len());
        prop_assert!(FrameDecoder::new(1 << 20).decode(&frame[..cut]).expect("no error").is_none());
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut payload = codec::encode(&Request::Ping).expect("encode");
    payload.push(0);
    assert!(matches!(
        codec::decode::<Request>(&payload),
        Err(ProtoError::TrailingBytes { trailing: 1 })
    ));
}

#[test]
fn oversized_length_is_refused_before_the_body_arrives() {
    let header = [0x00, 0x10, 0x00, 0x01];
    let err = FrameDecoder::new(1 << 20)
        .decode(&header)
        .expect_err("too large");
    assert!(matches!(
        err,
        ProtoError::FrameTooLarge {
            len: 0x0010_0001,
            max: 1_048_576
        }
    ));
}

#[test]
fn unknown_format_version_is_refused() {
    let mut frame = encode_frame(1, &Request::Ping).expect("encode");
    frame[4] = 99;
    let err = FrameDecoder::new(1 << 20)
        .decode(&frame)
        .expect_err("bad version");
    assert!(matches!(
        err,
        ProtoError::UnsupportedVersion { version: 99, .. }
    ));
}

/// 100,000 random and mutated frames (seeded, so a failure replays): no
/// panic, and no single allocation larger than the decode limit of the frame
/// (twice its length, at least 4 KiB) or serde's 1 MiB cap on a sequence's
/// preallocation.
#[test]
fn hostile_frames_decode_without_panic_or_large_allocation() {
    use rand::{Rng, SeedableRng};
    let seed = std::env::var("NORN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6e6f726e);
    println!("seed {seed} (replay with NORN_FUZZ_SEED={seed})");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let decoder = FrameDecoder::new(DECODE_LIMIT_BYTES);
    let valid: Vec<Vec<u8>> = sample_frames();
    for _ in 0..100_000 {
        let mut frame = if rng.gen_bool(0.5) {
            let len = rng.gen_range(0..256);
            (0..len).map(|_| rng.gen()).collect::<Vec<u8>>()
        } else {
            valid[rng.gen_range(0..valid.len())].clone()
        };
        for _ in 0..rng.gen_range(0..8) {
            if frame.is_empty() {
                break;
            }
            let at = rng.gen_range(0..frame.len());
            frame[at] = rng.gen();
        }
        if let Ok(Some((frame, _))) = decoder.decode(&frame) {
            let bound = (2 * frame.payload.len()).max(4096).max(1 << 20);
            LARGEST.store(0, Ordering::Relaxed);
            let _ = frame.decode::<Request>();
            let _ = frame.decode::<Response>();
            let largest = LARGEST.load(Ordering::Relaxed);
            assert!(
                largest <= bound,
                "an allocation of {largest} bytes for a {}-byte payload",
                frame.payload.len()
            );
        }
    }
}

/// A short payload whose length prefix claims a huge byte string is refused
/// without allocating it.
#[test]
fn a_lying_length_prefix_allocates_nothing_large() {
    // Request::ReplicaGet, then a varint length of 32 MiB (tag 252 + u32 LE),
    // under the codec's absolute limit but far over this payload's.
    let payload = [1u8, 252, 0x00, 0x00, 0x00, 0x02];
    LARGEST.store(0, Ordering::Relaxed);
    assert!(codec::decode::<Request>(&payload).is_err());
    assert!(LARGEST.load(Ordering::Relaxed) < 1 << 20);
}

fn sample_frames() -> Vec<Vec<u8>> {
    let object = Object::new()
        .update(
            &Context::default(),
            ActorId::new(1, 1),
            Sibling::Value(b"v1".to_vec()),
        )
        .update(&Context::default(), ActorId::new(2, 1), Sibling::Tombstone);
    let requests = [
        Request::Ping,
        Request::AdminPlan,
        Request::ReplicaGet {
            bucket: b"b".to_vec(),
            key: b"k".to_vec(),
        },
        Request::ReplicaPut {
            bucket: b"bucket".to_vec(),
            key: b"key".to_vec(),
            n: 3,
            object: object.clone(),
            hint_for: Some(NodeId(9)),
            sync: true,
        },
    ];
    let responses = [
        Response::Pong,
        Response::Replica {
            object: Some(object),
        },
        Response::Stored { synced: true },
    ];
    requests
        .iter()
        .map(|r| encode_frame(1, r).expect("encode"))
        .chain(
            responses
                .iter()
                .map(|r| encode_frame(2, r).expect("encode")),
        )
        .collect()
}
