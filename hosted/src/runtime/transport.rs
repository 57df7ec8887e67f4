//! Messages to and from the server: connect, the first message (with the
//! userfaultfd), and one request and its answer, whose host mappings are applied
//! before the answer is returned.

use super::Link;
use super::apply;
use crate::packet;
use crate::wire::{self, Setup};
use ipc_proto::Errno;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{AddressFamily, RecvFlags, SocketAddrUnix, SocketFlags, SocketType};
use std::io;

/// A connection to the server listening at `path`.
pub fn connect(path: &str) -> io::Result<OwnedFd> {
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::connect(&sock, &SocketAddrUnix::new(path)?)?;
    Ok(sock)
}

/// Sends the first message (`kind`, `payload`, the userfaultfd attached) and returns
/// the server's [`Setup`].
pub fn greet(
    sock: BorrowedFd<'_>,
    kind: u8,
    payload: &[u8],
    uffd: BorrowedFd<'_>,
) -> io::Result<Setup> {
    let mut msg = Vec::with_capacity(1 + payload.len());
    msg.push(kind);
    msg.extend_from_slice(payload);
    packet::send(sock, &msg, &[uffd])?;
    let mut buf = vec![0u8; wire::MAX_PACKET];
    let (n, _) = packet::recv(sock, &mut buf, RecvFlags::empty())?;
    if n == 0 {
        return Err(io::ErrorKind::ConnectionReset.into());
    }
    let (answer, _) = wire::decode_answer(&buf[..n]).ok_or(io::ErrorKind::InvalidData)?;
    if let Some(setup) = Setup::decode(answer) {
        return Ok(setup);
    }
    // A refusal: the server's errno.
    let e = ipc_proto::decode_response(answer)
        .ok()
        .and_then(|r| r.err())
        .map_or(libc::EPROTO, |e| e as i32);
    Err(io::Error::from_raw_os_error(e))
}

/// What one exchange sends beyond its kind and payload, and what it learnt applying the
/// answer.
#[derive(Default)]
pub struct Extras<'a> {
    /// Descriptors attached to the message.
    pub fds: &'a [BorrowedFd<'a>],
    /// The first host mapping the host refused (a host file it will not map).
    pub failed: Option<Errno>,
}

/// Sends one message and waits for its answer (received into `buf`, which must hold
/// [`wire::MAX_PACKET`] bytes): applies the host mappings it carries, puts the
/// descriptors it hands the program into `handed` (by server fd), then copies its
/// payload into `out`. `EIO` when the server is gone.
pub fn exchange(
    link: &Link,
    buf: &mut [u8],
    kind: u8,
    payload: &[u8],
    out: &mut [u8],
    handed: &mut Vec<(u32, OwnedFd)>,
    extras: &mut Extras<'_>,
) -> Result<usize, Errno> {
    let mut msg = [0u8; ipc_proto::MAX_REQUEST_LEN + 1];
    let m = msg.get_mut(..payload.len() + 1).ok_or(Errno::EMSGSIZE)?;
    m[0] = kind;
    m[1..].copy_from_slice(payload);
    let sock = link.sock.as_fd();
    packet::send(sock, m, extras.fds).map_err(|_| Errno::EIO)?;
    let (n, fds) = packet::recv(sock, buf, RecvFlags::empty()).map_err(|_| Errno::EIO)?;
    if n == 0 {
        return Err(Errno::EIO);
    }
    let (answer, ops) = wire::decode_answer(&buf[..n]).ok_or(Errno::EPROTO)?;
    let mut fds = fds.into_iter();
    for op in ops {
        let op = op.ok_or(Errno::EPROTO)?;
        let fd = if op.takes_fd() {
            Some(fds.next().ok_or(Errno::EPROTO)?)
        } else {
            None
        };
        match (op, fd) {
            (wire::HostOp::Descriptor { fd: server_fd }, Some(fd)) => handed.push((server_fd, fd)),
            (op, fd) => {
                let fd = fd.as_ref().map(|f| f.as_fd());
                if let Err(e) = apply::apply(&link.uffd, &link.setup, op, fd) {
                    extras.failed.get_or_insert(e);
                }
            }
        }
    }
    let dst = out.get_mut(..answer.len()).ok_or(Errno::EMSGSIZE)?;
    dst.copy_from_slice(answer);
    Ok(answer.len())
}
