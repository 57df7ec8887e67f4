//! A client's page faults, read from its userfaultfd: the server's own tables decide
//! (resolving the fault first where they hold nothing or only a read-only page for a
//! write), then exactly that page is placed in the host's tables, with write
//! protection where the server's page is read-only. A fault the server answers with a
//! signal gets it in the faulting thread.

use crate::HostedStub;
use crate::uffd::{FLAG_WP, FLAG_WRITE, Refusal, Uffd};
use ipc_proto::{Access, ClientId, PAGE_SIZE, Reply, Request, Signal};
use memserver::region::RegionBacking;
use memserver::{Frame, KernelStub, PageAttrs, Sender, Server};

const P: u64 = PAGE_SIZE;

/// A fault to resolve.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// The faulting client.
    pub client: ClientId,
    /// Its process.
    pub pid: i32,
    /// The faulting thread.
    pub tid: u32,
    /// The address.
    pub addr: u64,
    /// `FLAG_*` of the message.
    pub flags: u64,
}

/// Resolves `fault` of the client whose descriptor is `uffd`; `false` when the
/// client must be dropped (a signal the server decided cannot reach the faulting
/// thread: it would fault again at once, for ever).
pub fn resolve(server: &mut Server<HostedStub>, uffd: &Uffd, fault: Fault) -> bool {
    let page = fault.addr & !(P - 1);
    let write = fault.flags & (FLAG_WRITE | FLAG_WP) != 0;
    // The server's answer can take two rounds (a copy-on-write after a read fault put a
    // read-only page there); more means it keeps saying "resolved" without a page.
    let mut grown = false;
    for _ in 0..4 {
        let Some(space) = server.space_of(fault.client) else {
            // The client exited and still touches its window: its connection goes (its
            // runtime then ends such accesses with SIGBUS) instead of a fault loop.
            uffd.wake(page, P);
            return false;
        };
        match server.stub().query(space, page) {
            Some((frame, attrs)) if attrs.writable || !write => {
                if fault.flags & FLAG_WP != 0 {
                    // The host's page is write-protected; ours is writable now.
                    if uffd.write_protect(page, P, false).is_err() {
                        uffd.wake(page, P);
                    }
                } else {
                    place(server, uffd, fault.client, page, frame, attrs);
                }
                return true;
            }
            _ => {
                let access = if write { Access::Write } else { Access::Read };
                let req = Request::PageFault {
                    client: fault.client,
                    addr: page,
                    access,
                };
                match server.handle(Sender::Kernel, &req) {
                    Ok(Reply::FaultResolved) => {}
                    Ok(Reply::Signal(Signal::Bus)) if !grown => {
                        // Past the object's end as the server knew it: the program may
                        // have written it longer through its descriptor; ask again once.
                        grown = true;
                        match server.region_at(fault.client, page).map(|r| r.backing) {
                            Some(RegionBacking::Object { obj, .. }) => {
                                super::host_ops::object_grown(server, obj);
                            }
                            _ => return signal(fault, Signal::Bus),
                        }
                    }
                    Ok(Reply::Signal(s)) => return signal(fault, s),
                    _ => return signal(fault, Signal::Segv),
                }
            }
        }
    }
    log::warn!(
        "client {}: fault at {:#x} resolved without a page, SIGSEGV",
        fault.client.0,
        fault.addr
    );
    signal(fault, Signal::Segv)
}

/// Places `frame` at `page` in the host's tables, as the server's tables hold it.
fn place(
    server: &mut Server<HostedStub>,
    uffd: &Uffd,
    client: ClientId,
    page: u64,
    frame: Frame,
    attrs: PageAttrs,
) {
    let wp = !attrs.writable;
    let Some(r) = server.region_at(client, page) else {
        uffd.wake(page, P);
        return;
    };
    log::debug!(
        "place {page:#x} frame {frame:?} attrs {attrs:?} backing {:?}",
        r.backing
    );
    let result = match r.backing {
        RegionBacking::Object { obj, offset } => {
            let idx = (offset + page - r.start) / P;
            if server.object_frame(obj, idx) == Some(frame) {
                let size = server.object_size(obj).unwrap_or(0);
                let stub = server.stub_mut();
                match stub
                    .memory
                    .object(obj, size)
                    .map(|_| ())
                    .and_then(|()| stub.place_in_object(frame, obj, idx))
                {
                    // A private mapping of the object's page is copy-on-write: its first
                    // write comes to us.
                    Ok(()) => uffd.continue_at(page, wp || !r.shared),
                    Err(e) => {
                        log::warn!("object {}: cannot place page {idx}: {e}", obj.0);
                        Err(Refusal::Other(0))
                    }
                }
            } else {
                copy_private(server, uffd, page, frame, wp)
            }
        }
        RegionBacking::Device { dev, offset } => {
            let idx = (offset + page - r.start) / P;
            let size = server
                .config()
                .devices
                .get(usize::from(dev.0))
                .map_or(0, |d| d.frames.count * P);
            let stub = server.stub_mut();
            match stub
                .memory
                .device(dev.0, size)
                .map(|_| ())
                .and_then(|()| stub.place_in_device(frame, dev.0, idx))
            {
                Ok(()) => uffd.continue_at(page, wp),
                Err(_) => Err(Refusal::Other(0)),
            }
        }
        RegionBacking::Anon { .. } => copy_private(server, uffd, page, frame, wp),
    };
    if let Err(e) = result {
        log::debug!("place {page:#x}: {e:?}");
    }
    if result.is_err() {
        // Already there (another thread's fault placed it), or the mapping changed
        // under us: the thread retries its access, and faults again if it must.
        uffd.wake(page, P);
    }
}

fn copy_private(
    server: &Server<HostedStub>,
    uffd: &Uffd,
    page: u64,
    frame: Frame,
    wp: bool,
) -> Result<(), Refusal> {
    let mut bytes = [0u8; P as usize];
    server.stub().bytes(frame, &mut bytes);
    uffd.copy(page, &bytes, wp)
}

/// Delivers the server's signal to the faulting thread: it wakes from its fault, takes
/// the signal (its handler, or death), and faults again if it returns. `false` when it
/// cannot be delivered (no thread id: a descriptor made without them).
fn signal(fault: Fault, s: Signal) -> bool {
    let sig = match s {
        Signal::Bus => libc::SIGBUS,
        _ => libc::SIGSEGV,
    };
    if fault.tid == 0 {
        return false;
    }
    // SAFETY: tgkill takes plain integers; the thread is the one that faulted, in the
    // process whose connection this is.
    unsafe { libc::syscall(libc::SYS_tgkill, fault.pid, fault.tid as i32, sig) == 0 }
}
