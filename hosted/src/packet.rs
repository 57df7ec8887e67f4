//! One message on a `SOCK_SEQPACKET` connection, with descriptors attached
//! (`SCM_RIGHTS`): what both the daemon and the client runtime send and receive.

use crate::wire::MAX_FDS;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io;
use std::mem::MaybeUninit;

/// Sends `bytes` as one packet with `fds` attached.
pub fn send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !cmsg.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    loop {
        match rustix::net::sendmsg(
            sock,
            &[io::IoSlice::new(bytes)],
            &mut cmsg,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one packet into `buf`: its length (0 when the peer is gone) and the
/// descriptors attached, in order. A packet longer than `buf` is an error
/// (`InvalidData`), never silently cut.
pub fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: RecvFlags,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [io::IoSliceMut::new(buf)],
            &mut cmsg,
            flags | RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(g) => break g,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    if got.flags.contains(rustix::net::ReturnFlags::TRUNC)
        || got.flags.contains(rustix::net::ReturnFlags::CTRUNC)
    {
        return Err(io::ErrorKind::InvalidData.into());
    }
    Ok((got.bytes, fds))
}

/// A connected pair, for tests and for the conformance agent's channels.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Borrows every descriptor of `fds`.
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|f| f.as_fd()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_carries_its_descriptors_and_a_long_one_is_refused() {
        let (a, b) = pair().expect("pair");
        let (x, _y) = pair().expect("pair");
        send(a.as_fd(), b"hello", &[x.as_fd()]).expect("send");
        let mut buf = [0u8; 16];
        let (n, fds) = recv(b.as_fd(), &mut buf, RecvFlags::empty()).expect("recv");
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        send(a.as_fd(), &[0u8; 64], &[]).expect("send");
        assert_eq!(
            recv(b.as_fd(), &mut buf, RecvFlags::empty())
                .err()
                .map(|e| e.kind()),
            Some(io::ErrorKind::InvalidData)
        );
        drop(a);
        let (n, _) = recv(b.as_fd(), &mut buf, RecvFlags::empty()).expect("eof");
        assert_eq!(n, 0, "a closed peer reads as an empty packet");
    }
}
