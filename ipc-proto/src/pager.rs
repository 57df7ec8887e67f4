//! The pager protocol: how the memory server asks a file server (the *pager*, in the Mach
//! and L4Re sense) for the contents of the memory objects it maps from files, and gives
//! dirty pages back.
//!
//! The memory server is the client here: it resolves a path for a client of its own
//! ([`PagerRequest::Lookup`], with that client's identity, so the pager applies the file's
//! permissions), then pages the object in one page at a time, writes dirty pages back,
//! changes the object's size for `ftruncate`, and says when it holds nothing more of it.
//! Page contents travel inline, one page per message, so a message is bounded by
//! [`MAX_PAGER_REQUEST_LEN`] / [`MAX_PAGER_RESPONSE_LEN`] like every other. Encoding and
//! decoding follow [`codec`](crate::codec): total, never a panic, trailing bytes refused.
//! The protocol is versioned on its own ([`PAGER_PROTOCOL_MAJOR`]) and golden-vectored
//! with the rest in `golden/VECTORS.md`.

pub use crate::limits::PATH_MAX;
pub use crate::name::FilePath;
use crate::{Errno, PAGE_SIZE};
use core::fmt;
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pager protocol's major version: changes only with an incompatible wire change.
pub const PAGER_PROTOCOL_MAJOR: u16 = 1;
/// Its minor version: grows with compatible additions.
pub const PAGER_PROTOCOL_MINOR: u16 = 0;
/// Names one memory object at its pager (for a file server, the file's inode number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey(pub u64);

impl MaxSize for ObjectKey {
    const POSTCARD_MAX_SIZE: usize = u64::POSTCARD_MAX_SIZE;
}

/// Up to one page of an object's contents, borrowed: from the file it is read from when
/// encoded, from the message buffer when decoded.
// A borrow rather than an owned page: a page-in then copies the bytes twice (file to
// message, message to frame) instead of moving a 4 KiB value through every layer, which
// had been most of its cost.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct PageData<'a>(&'a [u8]);

impl<'a> PageData<'a> {
    /// `bytes` as page data; more than a page is `EINVAL`.
    pub fn new(bytes: &'a [u8]) -> Result<PageData<'a>, Errno> {
        if bytes.len() > PAGE_SIZE as usize {
            return Err(Errno::EINVAL);
        }
        Ok(PageData(bytes))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &'a [u8] {
        self.0
    }
}

impl fmt::Debug for PageData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.0;
        let head = &data[..data.len().min(8)];
        write!(f, "PageData({} bytes: {head:02x?}", data.len())?;
        f.write_str(if data.len() > 8 { "..)" } else { ")" })
    }
}

impl Serialize for PageData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for PageData<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PageData<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("at most a page of bytes, borrowed from the message")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<PageData<'de>, E> {
                PageData::new(v).map_err(|_| E::custom("more than a page"))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl MaxSize for PageData<'_> {
    // A varint length (two bytes cover 4096) and the bytes.
    const POSTCARD_MAX_SIZE: usize = 2 + PAGE_SIZE as usize;
}

/// What the memory server asks of a pager.
// `PageOut` borrows its page (decoded, from the message buffer); `Lookup` carries its
// path inline, since this crate allocates nothing, which makes it the big variant.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum PagerRequest<'a> {
    /// Version handshake. Reply: [`PagerReply::Hello`]; a different major is `ENOTSUP`.
    Hello {
        /// The sender's [`PAGER_PROTOCOL_MAJOR`].
        major: u16,
        /// The sender's [`PAGER_PROTOCOL_MINOR`].
        minor: u16,
    },
    /// Resolves `path` for a client with `uid`/`gid` that wants to read it, and to write
    /// it if `write`. Reply: [`PagerReply::Object`]. Errors: `ENOENT` (no such file),
    /// `EACCES` (its mode bits refuse the access, or it is read-only and `write`).
    Lookup {
        /// The file.
        path: FilePath,
        /// Write access wanted too.
        write: bool,
        /// The client's user id (0 bypasses mode bits).
        uid: u32,
        /// The client's group id.
        gid: u32,
    },
    /// The contents of the page at `offset` (page-aligned): a full page, or the bytes up
    /// to the end of the object for its last page. Reply: [`PagerReply::Data`]. Errors:
    /// `EINVAL` (unaligned), `ENXIO` (at or past the end), `EBADF` (unknown object).
    PageIn {
        /// The object.
        object: ObjectKey,
        /// Byte offset, page-aligned.
        offset: u64,
    },
    /// Writes `data` back at `offset` (page-aligned); bytes past the object's end are
    /// dropped (write-back never grows a file). Reply: [`PagerReply::Done`]. Errors:
    /// `EINVAL` (unaligned), `EACCES` (read-only object), `EBADF`.
    PageOut {
        /// The object.
        object: ObjectKey,
        /// Byte offset, page-aligned.
        offset: u64,
        /// The page's contents.
        #[serde(borrow)]
        data: PageData<'a>,
    },
    /// Sets the object's size (`ftruncate` through a file's fd): growing zero-fills.
    /// Reply: [`PagerReply::Done`]. Errors: `EFBIG` (beyond the pager's limit),
    /// `EACCES` (read-only object), `EBADF`.
    SetSize {
        /// The object.
        object: ObjectKey,
        /// The new size in bytes.
        size: u64,
    },
    /// The memory server holds nothing more of the object (no page, fd or mapping), so
    /// the pager may forget its state. Reply: [`PagerReply::Done`]. Errors: `EBADF`.
    Release {
        /// The object.
        object: ObjectKey,
    },
}

/// A pager's successful answers.
// As for requests, `Data` borrows its page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum PagerReply<'a> {
    /// Answer to [`PagerRequest::Hello`]: the pager's version.
    Hello {
        /// The pager's major version.
        major: u16,
        /// The pager's minor version.
        minor: u16,
    },
    /// Answer to [`PagerRequest::Lookup`]: the object and what `fstat` reports of it.
    Object {
        /// The object's key, for every later request about it.
        object: ObjectKey,
        /// Its size in bytes.
        size: u64,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
    },
    /// Answer to [`PagerRequest::PageIn`].
    Data(#[serde(borrow)] PageData<'a>),
    /// Answer to the requests that only act.
    Done,
}

/// A pager's answer: a reply, or the errno the request failed with.
pub type PagerResponse<'a> = Result<PagerReply<'a>, Errno>;

/// Upper bound, in bytes, of every encoded [`PagerRequest`].
pub const MAX_PAGER_REQUEST_LEN: usize = PagerRequest::<'static>::POSTCARD_MAX_SIZE;
/// Upper bound, in bytes, of every encoded [`PagerResponse`].
pub const MAX_PAGER_RESPONSE_LEN: usize = <PagerResponse<'static> as MaxSize>::POSTCARD_MAX_SIZE;

// A page and its header: the bounds a transport sizes its buffers by.
const _: () = assert!(MAX_PAGER_REQUEST_LEN <= PAGE_SIZE as usize + 32);
const _: () = assert!(MAX_PAGER_RESPONSE_LEN <= PAGE_SIZE as usize + 16);

/// Encodes `req` into `buf` ([`MAX_PAGER_REQUEST_LEN`] bytes always suffice); the
/// length, or `EMSGSIZE` when `buf` is too short.
pub fn encode_pager_request(req: &PagerRequest, buf: &mut [u8]) -> Result<usize, Errno> {
    crate::codec::encode(req, buf)
}

/// Decodes one pager request occupying all of `bytes` (a page it carries stays there):
/// `EBADMSG` if malformed, `EINVAL` if it carries an invalid value.
pub fn decode_pager_request(bytes: &[u8]) -> Result<PagerRequest<'_>, Errno> {
    crate::codec::decode(bytes)
}

/// Encodes `resp` into `buf` ([`MAX_PAGER_RESPONSE_LEN`] bytes always suffice).
pub fn encode_pager_response(resp: &PagerResponse, buf: &mut [u8]) -> Result<usize, Errno> {
    crate::codec::encode(resp, buf)
}

/// Decodes one pager response occupying all of `bytes` (a page it carries stays there).
pub fn decode_pager_response(bytes: &[u8]) -> Result<PagerResponse<'_>, Errno> {
    crate::codec::decode(bytes)
}

/// One example of every pager request, for the golden vectors and tests.
pub fn example_requests() -> [(&'static str, PagerRequest<'static>); 7] {
    let key = ObjectKey(42);
    fn page(b: &'static [u8]) -> PageData<'static> {
        PageData::new(b).unwrap_or_default()
    }
    [
        (
            "pager_hello",
            PagerRequest::Hello {
                major: PAGER_PROTOCOL_MAJOR,
                minor: PAGER_PROTOCOL_MINOR,
            },
        ),
        (
            "pager_lookup",
            PagerRequest::Lookup {
                path: FilePath::new("/etc/motd").unwrap_or_else(|_| unreachable!()),
                write: false,
                uid: 1000,
                gid: 1000,
            },
        ),
        (
            "pager_page_in",
            PagerRequest::PageIn {
                object: key,
                offset: 8192,
            },
        ),
        (
            "pager_page_out",
            PagerRequest::PageOut {
                object: key,
                offset: 0,
                data: page(b"hello"),
            },
        ),
        (
            "pager_page_out_full",
            PagerRequest::PageOut {
                object: key,
                offset: 4096,
                data: page(&[0xa5; PAGE_SIZE as usize]),
            },
        ),
        (
            "pager_set_size",
            PagerRequest::SetSize {
                object: key,
                size: 10_000,
            },
        ),
        ("pager_release", PagerRequest::Release { object: key }),
    ]
}

/// One example of every pager reply, and an error.
pub fn example_responses() -> [(&'static str, PagerResponse<'static>); 5] {
    [
        (
            "pager_hello",
            Ok(PagerReply::Hello {
                major: PAGER_PROTOCOL_MAJOR,
                minor: PAGER_PROTOCOL_MINOR,
            }),
        ),
        (
            "pager_object",
            Ok(PagerReply::Object {
                object: ObjectKey(42),
                size: 10_000,
                mode: 0o644,
                uid: 0,
                gid: 0,
            }),
        ),
        (
            "pager_data_tail",
            Ok(PagerReply::Data(
                PageData::new(b"end of file\n").unwrap_or_default(),
            )),
        ),
        ("pager_done", Ok(PagerReply::Done)),
        ("pager_no_such_file", Err(Errno::ENOENT)),
    ]
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::borrow::ToOwned;

    #[test]
    fn paths_follow_their_rules() {
        assert_eq!(FilePath::new("/etc/motd").map(|p| p.as_str().len()), Ok(9));
        assert!(FilePath::new("/a").is_ok());
        for bad in ["", "/", "etc", "/a//b", "/a/", "/./a", "/a/../b", "/a\0b"] {
            assert_eq!(FilePath::new(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        let long = "/".to_owned() + &"x".repeat(PATH_MAX);
        assert_eq!(FilePath::new(&long), Err(Errno::ENAMETOOLONG));
        assert!(FilePath::new(&long[..PATH_MAX]).is_ok());
    }

    #[test]
    fn page_data_holds_at_most_a_page() {
        assert!(PageData::new(&[0; PAGE_SIZE as usize]).is_ok());
        assert_eq!(
            PageData::new(&[0; PAGE_SIZE as usize + 1]),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn the_bounds_hold_for_the_largest_messages() {
        let page = PageData::new(&[0xff; PAGE_SIZE as usize]).unwrap();
        let out = PagerRequest::PageOut {
            object: ObjectKey(u64::MAX),
            offset: u64::MAX,
            data: page,
        };
        let mut buf = [0u8; MAX_PAGER_REQUEST_LEN];
        assert!(encode_pager_request(&out, &mut buf).is_ok());
        let long = "/".to_owned() + &"p".repeat(PATH_MAX - 1);
        let lookup = PagerRequest::Lookup {
            path: FilePath::new(&long).unwrap(),
            write: true,
            uid: u32::MAX,
            gid: u32::MAX,
        };
        assert!(encode_pager_request(&lookup, &mut buf).is_ok());
        let mut buf = [0u8; MAX_PAGER_RESPONSE_LEN];
        assert!(encode_pager_response(&Ok(PagerReply::Data(page)), &mut buf).is_ok());
    }

    #[test]
    fn decoding_garbage_is_an_errno_never_a_panic() {
        let mut buf = [0u8; MAX_PAGER_REQUEST_LEN];
        let (_, req) = &example_requests()[3];
        let n = encode_pager_request(req, &mut buf).unwrap();
        for cut in 0..n {
            assert!(decode_pager_request(&buf[..cut]).is_err(), "{cut}");
        }
        let mut long = buf[..n].to_vec();
        long.push(0);
        assert_eq!(decode_pager_request(&long), Err(Errno::EBADMSG));
        // A page-data length past a page, and a path that breaks the rules.
        assert!(decode_pager_request(&[3, 1, 0, 0x81, 0x20]).is_err());
        assert!(decode_pager_request(&[1, 3, b'a', b'/', b'b', 0, 0, 0]).is_err());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            let _ = decode_pager_request(&bytes[..(x % 9) as usize]);
            let _ = decode_pager_response(&bytes[..(x >> 60) as usize % 9]);
        }
    }
}
