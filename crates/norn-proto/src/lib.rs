//! What norn nodes and clients say to each other, and how it is framed.
//!
//! - [`codec`]: the only place that names bincode (pinned at 2.0.1): encode
//!   and decode any serde type with a byte limit, trailing bytes refused.
//! - [`frame`]: a frame is a `u32` length, a format version, a request id and
//!   a payload; the length is checked before anything is allocated.
//! - [`message`]: the requests and responses. Later work adds variants;
//!   variants are only ever appended, so older peers can still decode.
//! - [`role`]: [`ClientRole`], what a client certificate allows.
//! - [`view`]: [`view::SiblingView`], a sibling as the HTTP API and the CLI
//!   show it in JSON.
//! - [`error`]: [`ProtoError`], what can go wrong.

pub mod codec;
pub mod error;
pub mod frame;
pub mod message;
pub mod role;
pub mod view;

pub use error::ProtoError;
pub use frame::{encode_frame, Frame, FrameDecoder, FORMAT_VERSION, FRAME_HEADER_BYTES};
pub use message::{
    ErrorCode, ErrorReply, GetReply, KeyDigest, KeyObject, KeyRef, LatencyBuckets, MemberInfo,
    NodeFailureHistory, NodeLatencies, NodeStatus, PartitionVerified, PeerLatencies, PeerOutages,
    PlanNode, PlanView, PutReply, QuorumOptions, RepairProgress, Request, Response, TransferState,
    TransferView, WriteReceipt,
};
pub use role::ClientRole;
