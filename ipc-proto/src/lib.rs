//! The wire protocol of the memory server: every message, flag set, errno and limit.
//!
//! This crate is the single declaration of the protocol (STYLE.md, after Hubris' Idol):
//! the server, the client library and the kernel all use these types, so a client cannot
//! send a message the server does not understand. Messages are serde types encoded with
//! postcard (varints, no allocation) into caller-provided buffers whose sizes are bounded
//! by [`MAX_REQUEST_LEN`] and [`MAX_RESPONSE_LEN`]. Values are validated at decode time:
//! flag sets with unknown bits, malformed names and unknown errnos do not decode.
//!
//! `golden/VECTORS.md` holds the exact bytes of one example of every request and reply
//! variant: the reference for other implementations of the protocol. The [`pager`]
//! module is the second protocol, between the memory server and file servers.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod errno;
pub mod examples;
pub mod flags;
pub mod limits;
pub mod message;
pub mod name;
pub mod pager;

pub use codec::{
    MAX_REQUEST_LEN, MAX_RESPONSE_LEN, decode_request, decode_response, encode_request,
    encode_response,
};
pub use errno::Errno;
pub use flags::{Advice, MapFlags, MlockallFlags, Mode, MremapFlags, MsyncFlags, OFlags, Prot};
pub use limits::{NAME_MAX, OBJ_NAME_MAX, PAGE_SIZE, PROTOCOL_MAJOR, PROTOCOL_MINOR};
pub use message::{
    Access, Backing, CacheMode, ClientId, ClientSpec, Fd, Limits, MmapArgs, ObjectKind, PageInfo,
    RegionInfo, Reply, Request, Response, ServerInfo, ServerStats, Signal, Stat,
};
pub use name::{ObjName, ShmName};
pub use pager::{
    FilePath, MAX_PAGER_REQUEST_LEN, MAX_PAGER_RESPONSE_LEN, ObjectKey, PageData, PagerReply,
    PagerRequest, PagerResponse, decode_pager_request, decode_pager_response, encode_pager_request,
    encode_pager_response,
};
