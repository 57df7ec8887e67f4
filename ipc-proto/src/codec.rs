//! Encoding into and decoding from caller-provided buffers, with proven size bounds.
//!
//! Decoding is total: any byte string yields a message or an [`Errno`], never a panic,
//! never a read past the slice, and trailing bytes are refused. A message that parses but
//! carries an invalid value (unknown flag bit, bad name, unknown errno) is `EINVAL`;
//! a request of a kind this version does not know (its variant index is past the last
//! [`Request`] variant) is `ENOSYS`, as an unknown system call is; anything else
//! structurally wrong (truncated, bad tag, bad varint, trailing bytes) is `EBADMSG`.

use crate::Errno;
use crate::message::{Request, Response};
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

/// Upper bound, in bytes, of every encoded [`Request`].
pub const MAX_REQUEST_LEN: usize = Request::POSTCARD_MAX_SIZE;
/// Upper bound, in bytes, of every encoded [`Response`].
pub const MAX_RESPONSE_LEN: usize = <Response as MaxSize>::POSTCARD_MAX_SIZE;

// The bounds the protocol promises, proven at compile time: a name-carrying request fits
// in NAME_MAX + 16 bytes and every response in 64.
const _: () = assert!(MAX_REQUEST_LEN <= crate::NAME_MAX + 16);
const _: () = assert!(MAX_RESPONSE_LEN <= 64);

/// Encodes `req` into `buf`, returning the number of bytes written.
///
/// A buffer of [`MAX_REQUEST_LEN`] bytes always suffices; a shorter one that does not
/// fit the message is `EMSGSIZE`.
pub fn encode_request(req: &Request, buf: &mut [u8]) -> Result<usize, Errno> {
    encode(req, buf)
}

/// Decodes one request occupying all of `bytes`.
pub fn decode_request(bytes: &[u8]) -> Result<Request, Errno> {
    // serde reports an unknown variant index as an invalid value; tell it apart first,
    // so a newer client learns the call is not implemented rather than malformed.
    if let Some(index) = leading_varint(bytes)
        && index >= u64::from(Request::VARIANTS)
    {
        return Err(Errno::ENOSYS);
    }
    decode(bytes)
}

/// The LEB128 varint `bytes` starts with (postcard's enum variant index), if it is one
/// that fits in a `u32` as postcard requires.
fn leading_varint(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (value <= u64::from(u32::MAX)).then_some(value);
        }
    }
    None
}

/// Encodes `resp` into `buf`, returning the number of bytes written.
///
/// A buffer of [`MAX_RESPONSE_LEN`] bytes always suffices.
pub fn encode_response(resp: &Response, buf: &mut [u8]) -> Result<usize, Errno> {
    encode(resp, buf)
}

/// Decodes one response occupying all of `bytes`.
pub fn decode_response(bytes: &[u8]) -> Result<Response, Errno> {
    decode(bytes)
}

pub(crate) fn encode<T: Serialize>(msg: &T, buf: &mut [u8]) -> Result<usize, Errno> {
    match postcard::to_slice(msg, buf) {
        Ok(used) => Ok(used.len()),
        Err(postcard::Error::SerializeBufferFull) => Err(Errno::EMSGSIZE),
        // Our types serialize only integers, strings and enums: nothing else can fail.
        Err(_) => Err(Errno::EINVAL),
    }
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Errno> {
    match postcard::take_from_bytes(bytes) {
        Ok((msg, [])) => Ok(msg),
        Ok((_, _trailing)) => Err(Errno::EBADMSG),
        Err(postcard::Error::SerdeDeCustom) => Err(Errno::EINVAL),
        Err(_) => Err(Errno::EBADMSG),
    }
}
