//! The host mappings a successful request asks of its client: each of its regions in
//! the range the request changed becomes one host mapping (private anonymous memory,
//! the object's memfd, or the client's own host file, shared or private), so the host
//! enforces placement and protection, and a region is one line of `/proc/self/maps`
//! however it is touched.

use crate::HostedStub;
use crate::object_memory::ObjectMemory;
use crate::wire::{HostOp, RemapBacking};
use ipc_proto::{Advice, ClientId, PAGE_SIZE, Prot, Reply, Request};
use memserver::Server;
use memserver::object::ObjectId;
use memserver::region::RegionBacking;
use rustix::fd::OwnedFd;
use std::io;

/// Operations and the descriptors their `MapObject`s take, in order.
#[derive(Default)]
pub struct HostOps {
    /// The operations.
    pub ops: Vec<HostOp>,
    /// One descriptor per `MapObject`, in order.
    pub fds: Vec<OwnedFd>,
}

fn pages(len: u64) -> u64 {
    len.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE)
}

fn prot_bits(p: Prot) -> u8 {
    (p.bits() & 0x7) as u8
}

/// The parts of `[addr, addr + len)` inside each window.
fn clip(addr: u64, len: u64, windows: [(u64, u64); 2]) -> impl Iterator<Item = (u64, u64)> {
    windows
        .into_iter()
        .filter_map(move |w| clip_one(addr, len, w))
}

/// `[addr, addr + len)` clipped to `window`, if anything is left.
fn clip_one(addr: u64, len: u64, window: (u64, u64)) -> Option<(u64, u64)> {
    let start = addr.max(window.0);
    let end = addr.saturating_add(pages(len)).min(window.1);
    (start < end).then(|| (start, end - start))
}

/// The operations `client`'s request `req`, answered `reply`, needs; `file` is the
/// client's own descriptor of the host file an `mmap` maps, if it maps one.
pub fn for_request(
    server: &mut Server<HostedStub>,
    client: ClientId,
    req: &Request,
    reply: &Reply,
    windows: [(u64, u64); 2],
    file: Option<&OwnedFd>,
) -> io::Result<HostOps> {
    let mut out = HostOps::default();
    match (req, reply) {
        (Request::Mmap(args), Reply::Mapped { addr }) => {
            map_range(
                server,
                client,
                *addr,
                *addr + pages(args.len),
                file,
                &mut out,
            )?;
        }
        (Request::Munmap { addr, len }, Reply::Done) => {
            for (addr, len) in clip(*addr, *len, windows) {
                out.ops.push(HostOp::Reserve { addr, len });
            }
        }
        (Request::Mprotect { addr, len, prot }, Reply::Done) => {
            for (addr, len) in clip(*addr, *len, windows) {
                out.ops.push(HostOp::Protect {
                    addr,
                    len,
                    prot: prot_bits(*prot),
                });
            }
        }
        (
            Request::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                ..
            },
            Reply::Mapped { addr },
        ) => {
            let backing = match server.region_at(client, *addr) {
                Some(r) if server.is_host_backed(&r) => RemapBacking::HostFile,
                Some(r) if !matches!(r.backing, RegionBacking::Anon { .. }) => RemapBacking::Object,
                _ => RemapBacking::Anon,
            };
            out.ops.push(HostOp::Remap {
                old: *old_addr,
                old_len: pages(*old_len),
                new: *addr,
                new_len: pages(*new_len),
                dont_unmap: flags.contains(ipc_proto::MremapFlags::DONTUNMAP),
                backing,
            });
        }
        (Request::ShmOpen { .. }, Reply::Fd(fd)) => {
            // The program's fd is a descriptor of the object's bytes (`read(2)`,
            // `write(2)`, `dup`, `fork` work on it as on Linux), read-only unless the fd
            // may write; the server's fd stays the one that maps and sizes it.
            if let Some((obj, writable)) = server.shm_of_fd(client, *fd) {
                let size = server.object_size(obj).unwrap_or(0);
                let memfd = server.stub_mut().memory.object(obj, size)?;
                out.fds.push(ObjectMemory::handout(memfd, writable)?);
                out.ops.push(HostOp::Descriptor { fd: fd.0 });
            }
        }
        (Request::Madvise { addr, len, advice }, Reply::Done) => {
            let host = match advice {
                Advice::DontNeed => Some(libc::MADV_DONTNEED),
                // The server frees at once; the host's MADV_FREE only may.
                Advice::Free => Some(libc::MADV_DONTNEED),
                Advice::DontFork => Some(libc::MADV_DONTFORK),
                Advice::DoFork => Some(libc::MADV_DOFORK),
                _ => None,
            };
            if let Some(advice) = host {
                for (addr, len) in clip(*addr, *len, windows) {
                    out.ops.push(HostOp::Advise {
                        addr,
                        len,
                        advice: advice as u8,
                    });
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// Brings the size of the shm object `req` names (through `fd`) up to its bytes: the
/// program may have written past its end through its descriptor, as on Linux, before it
/// asks for its size or maps it.
pub fn sync_size(server: &mut Server<HostedStub>, client: ClientId, req: &Request) {
    let fd = match req {
        Request::Fstat { fd } => *fd,
        Request::Mmap(args) => match args.fd {
            Some(fd) => fd,
            None => return,
        },
        _ => return,
    };
    if let Some((obj, _)) = server.shm_of_fd(client, fd) {
        object_grown(server, obj);
    }
}

/// The server's size of `obj` follows its memfd's, if that grew.
pub fn object_grown(server: &mut Server<HostedStub>, obj: ObjectId) {
    let size = server
        .stub()
        .memory
        .existing(obj)
        .and_then(|fd| rustix::fs::fstat(fd).ok())
        .map_or(0, |st| st.st_size as u64);
    server.object_grown(obj, size);
}

/// One host mapping per region of `client` in `[start, end)`, as the regions are now.
/// A region of a host file is mapped from `file`, the client's own descriptor of it
/// (the server keeps none): without it, the range cannot be made.
pub fn map_range(
    server: &mut Server<HostedStub>,
    client: ClientId,
    start: u64,
    end: u64,
    file: Option<&OwnedFd>,
    out: &mut HostOps,
) -> io::Result<()> {
    for r in server.regions_in(client, start, end) {
        let (s, e) = (r.start.max(start), r.end.min(end));
        let prot = prot_bits(r.prot);
        if server.is_host_backed(&r) {
            let RegionBacking::Object { offset, .. } = r.backing else {
                continue;
            };
            let fd = file.ok_or_else(|| io::Error::other("no descriptor of the host file"))?;
            // The client's own open file description, handed back: the host checks its
            // open mode again when the client maps it.
            out.fds.push(fd.try_clone()?);
            out.ops.push(HostOp::MapFile {
                addr: s,
                len: e - s,
                prot,
                shared: r.shared,
                offset: offset + (s - r.start),
            });
            continue;
        }
        // A shared mapping the client may not write is mapped private on the host, from
        // a read-only descriptor: it sees the object's pages exactly as a shared one does
        // while nothing writes it, the kernel registers it with the userfaultfd (it
        // refuses shared mappings of read-only files), and a client that makes it
        // writable by hand only writes its own copies.
        let mut shared = r.shared;
        let (fd, offset) = match r.backing {
            RegionBacking::Anon { .. } => {
                if r.growsdown && s == r.start {
                    // A stack grows into the room below it: the host must let a touch
                    // there reach the server (it decides whether the stack grows, or
                    // the access is SIGSEGV), so that room is mapped too.
                    let limit = server.config().stack_grow_limit;
                    let floor = server
                        .regions_in(client, r.start.saturating_sub(limit), r.start)
                        .last()
                        .map_or(server.config().floor_of(r.start), |below| below.end);
                    let low = r.start.saturating_sub(limit).max(floor);
                    if low < r.start {
                        out.ops.push(HostOp::MapAnon {
                            addr: low,
                            len: r.start - low,
                            prot,
                        });
                    }
                }
                out.ops.push(HostOp::MapAnon {
                    addr: s,
                    len: e - s,
                    prot,
                });
                continue;
            }
            RegionBacking::Object { obj, offset } => {
                let size = server.object_size(obj).unwrap_or(0);
                let writable = r.shared && r.max_prot.contains(Prot::WRITE);
                shared &= writable;
                let fd = server.stub_mut().memory.object(obj, size)?;
                (ObjectMemory::handout(fd, writable)?, offset)
            }
            RegionBacking::Device { dev, offset } => {
                let size = server
                    .config()
                    .devices
                    .get(usize::from(dev.0))
                    .map_or(0, |d| d.frames.count * PAGE_SIZE);
                let writable = r.max_prot.contains(Prot::WRITE);
                shared &= writable;
                let fd = server.stub_mut().memory.device(dev.0, size)?;
                (ObjectMemory::handout(fd, writable)?, offset)
            }
        };
        out.ops.push(HostOp::MapObject {
            addr: s,
            len: e - s,
            prot,
            shared,
            offset: offset + (s - r.start),
        });
        out.fds.push(fd);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_clipped_to_each_window_it_touches() {
        let windows = [(1 << 40, 2 << 40), (1 << 30, 1 << 31)];
        // Inside the main window only: nothing in the low one (and no underflow).
        let v: Vec<_> = clip(1 << 40, 8192, windows).collect();
        assert_eq!(v, [(1 << 40, 8192)]);
        // Inside the low window only.
        let v: Vec<_> = clip(1 << 30, 100, windows).collect();
        assert_eq!(v, [(1 << 30, 4096)]);
        // Across both, and the gap between is never touched.
        let v: Vec<_> = clip(0, u64::MAX, windows).collect();
        assert_eq!(v, [(1 << 40, 1 << 40), (1 << 30, 1 << 30)]);
        assert_eq!(clip(0, 4096, windows).count(), 0);
    }
}
