//! Endpoints: the tasks that serve calls (the memory server, the file server, an
//! app's peers). A call writes the message into the task's buffer and runs it until its
//! next `receive`, which carries the reply; the kernel's own requests to the memory
//! server (clients starting and ending, its control messages) go the same way.

use crate::trap::TrapFrame;
use crate::{
    loader::{app_stack, place},
    run::{Entry, run_task},
    state::{CURRENT, NOT_AN_ENDPOINT, RUNNING, Space, with},
    umem::{read_user, write_user},
    uslice::USlice,
};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use ipc_proto::{ClientId, ClientSpec, Errno, Reply, Request, ServerStats};
use microkernel_abi::{AppMode, Control, Header, MAX_MESSAGE, encode_result};

/// A task that serves calls: it sleeps in `receive` until one arrives. The memory
/// server task is endpoint 0; an app's peer tasks follow.
#[derive(Default)]
pub(crate) struct Endpoint {
    pub(crate) space: Option<Space>,
    /// The client the task is (none for the memory server itself).
    pub(crate) client: Option<ClientId>,
    /// The client that started it, the only one that may call it (none: the kernel).
    pub(crate) owner: Option<ClientId>,
    /// Where it resumes: its registers at its last `receive`.
    pub(crate) regs: TrapFrame,
    /// Where its next message goes, as its last `receive` named it (none: nowhere valid).
    pub(crate) buf: Option<USlice>,
    pub(crate) reply: Vec<u8>,
    pub(crate) running: bool,
    pub(crate) dead: bool,
}

/// What the server task's `receive` ends a run with.
pub(crate) const RECEIVED: u64 = 0x5EC0_0000;

/// The file server task's endpoint: the memory server's pager, called by it alone.
pub(crate) const FILES_EP: u32 = 1;

/// Sends `message` to the server task as `sender` and runs it until it answers; the
/// answer.
pub(crate) fn server_call(sender: Header, message: &[u8]) -> Result<Vec<u8>, Errno> {
    endpoint_call(0, sender, message)
}

/// Sends `message` from `sender` to endpoint `ep` and runs it until its next `receive`:
/// the reply. The call nests on the kernel stack below the caller; a peer that dies
/// instead is gone (`ESRCH` now and after); the memory server dying is fatal.
pub(crate) fn endpoint_call(ep: u32, sender: Header, message: &[u8]) -> Result<Vec<u8>, Errno> {
    let (space, client, regs) = with(|m| {
        let e = m.endpoints.get_mut(ep as usize).ok_or(Errno::ESRCH)?;
        let space = e.space.ok_or(Errno::ESRCH)?;
        if e.dead {
            return Err(Errno::ESRCH);
        }
        if e.running {
            // A call back into a task that is itself waiting on a call: no cycles.
            return Err(Errno::EBUSY);
        }
        let total = Header::LEN + message.len();
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(&sender.encode());
        bytes.extend_from_slice(message);
        let (buf, regs, client) = (e.buf, e.regs.returning(total as u64), e.client);
        write_user(m, space, buf.ok_or(Errno::EFAULT)?, &bytes)?;
        // Marked only once the message is in: a failed delivery leaves it callable.
        m.endpoints[ep as usize].running = true;
        Ok((space, client, regs))
    })?;
    let code = run_task(Entry {
        space,
        endpoint: ep,
        client,
        regs,
    })
    .ok_or(Errno::ESRCH)?;
    let died = with(|m| {
        let e = &mut m.endpoints[ep as usize];
        e.running = false;
        if code == RECEIVED {
            return Ok(core::mem::take(&mut e.reply));
        }
        if ep == 0 {
            crate::kprintln!("kernel: the memory server task died (code {code:#x})");
            crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
        }
        e.dead = true;
        Err(e.client)
    });
    match died {
        Ok(reply) => Ok(reply),
        Err(client) => {
            if let Some(c) = client {
                with(|m| m.owned.remove(&c.0));
                end_client(c);
            }
            Err(Errno::ESRCH)
        }
    }
}

/// A request to the server, through the wire format, as `sender`.
pub(crate) fn server_request(sender: memserver::Sender, req: &Request) -> Result<Reply, Errno> {
    let mut buf = [0u8; ipc_proto::MAX_REQUEST_LEN];
    let n = ipc_proto::encode_request(req, &mut buf)?;
    let from = match sender {
        memserver::Sender::Kernel => Header::Kernel,
        memserver::Sender::Client(c) => Header::Client(c.0),
    };
    let reply = server_call(from, &buf[..n])?;
    ipc_proto::decode_response(&reply)?
}

/// Announces a new client as the kernel: started with `spec`, or cloned from `parent`
/// (the memory half of `fork`).
pub(crate) fn new_client(spec: ClientSpec, parent: Option<ClientId>) -> Result<ClientId, Errno> {
    let client = with(|m| {
        let c = ClientId(m.next_client);
        m.next_client += 1;
        m.binding = Some(c);
        c
    });
    let req = match parent {
        None => Request::ClientStarted { client, spec },
        Some(parent) => Request::ClientCloned {
            parent,
            child: client,
            spec,
        },
    };
    let r = server_request(memserver::Sender::Kernel, &req);
    with(|m| m.binding = None);
    r.map(|_| client)
}

/// Ends a client as the kernel.
pub(crate) fn end_client(client: ClientId) {
    let _ = server_request(memserver::Sender::Kernel, &Request::ClientExited { client });
}

/// Turns the server's after-every-request invariant check on or off.
pub fn set_self_check(on: bool) {
    let control = if on {
        Control::SelfCheckOn
    } else {
        Control::SelfCheckOff
    };
    let _ = server_call(Header::Control, &[control as u8]);
}

/// The server's invariants, checked in full now, and the kernel's count of faults the
/// server answered without installing anything.
pub(crate) fn check_all() -> Result<(), String> {
    let verdict = server_call(Header::Control, &[Control::CheckNow as u8])
        .map_err(|e| format!("check: {e}"))?;
    if !verdict.is_empty() {
        return Err(String::from_utf8_lossy(&verdict).into_owned());
    }
    match with(|m| m.livelocks) {
        0 => Ok(()),
        n => Err(format!("{n} faults resolved without effect")),
    }
}

pub(crate) fn stats() -> ServerStats {
    match server_request(memserver::Sender::Kernel, &Request::Stats) {
        Ok(Reply::Stats(s)) => s,
        other => {
            crate::kprintln!("kernel: no stats from the memory server: {other:?}");
            crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
        }
    }
}

/// Whether the memory server task is what runs in ring 3 now.
pub fn server_running() -> bool {
    RUNNING.load(Ordering::Acquire) == 0
}

/// Whether one of the kernel's own serving tasks (the memory server, the file server)
/// runs in ring 3 now: their memory is never lazy, so any exception there is fatal.
pub fn kernel_task_running() -> bool {
    matches!(RUNNING.load(Ordering::Acquire), 0 | FILES_EP)
}

/// The memory server task's `pager_call(request, len, reply, cap)`: sends the request
/// to the file server task and copies its answer back; the answer's length.
pub fn pager_call([a0, a1, a2, a3]: [u64; 4]) -> u64 {
    if !server_running() {
        return encode_result(Err(Errno::EPERM));
    }
    let call = || -> Result<u64, Errno> {
        let (request, reply_to) = (
            USlice::new(a0, a1, MAX_MESSAGE)?,
            USlice::new(a2, a3, MAX_MESSAGE)?,
        );
        let request = with(|m| read_user(m, m.endpoints[0].space.ok_or(Errno::ESRCH)?, request))?;
        let reply = endpoint_call(FILES_EP, Header::Kernel, &request)?;
        with(|m| {
            write_user(
                m,
                m.endpoints[0].space.ok_or(Errno::ESRCH)?,
                reply_to,
                &reply,
            )
        })?;
        Ok(reply.len() as u64)
    };
    encode_result(call())
}

/// `receive` by endpoint `ep`: keeps its reply (`a0`, `a1` bytes), where the next message
/// goes (`a2`, `a3` bytes) and where to resume it (`at`), and ends its run.
pub(crate) fn receive(ep: u32, [a0, a1, a2, a3]: [u64; 4], at: &TrapFrame) -> ! {
    with(|m| {
        let space = m.endpoints[ep as usize].space;
        let reply = USlice::new(a0, a1, MAX_MESSAGE)
            .and_then(|r| read_user(m, space.ok_or(Errno::ESRCH)?, r));
        let e = &mut m.endpoints[ep as usize];
        // A reply the kernel cannot read is none at all (the caller sees EPROTO).
        e.reply = reply.unwrap_or_default();
        // A buffer the kernel cannot write takes no message (the caller sees EFAULT).
        e.buf = USlice::new(a2, a3.min(Header::LEN as u64 + MAX_MESSAGE), u64::MAX).ok();
        e.regs = *at;
    });
    crate::user::kill(RECEIVED)
}

/// A peer task's `receive` (the app's other syscalls are [`app_syscall`]'s).
pub fn peer_receive(a: [u64; 4], at: &TrapFrame) -> u64 {
    match RUNNING.load(Ordering::Acquire) {
        0 | NOT_AN_ENDPOINT => encode_result(Err(Errno::EPERM)),
        ep => receive(ep, a, at),
    }
}

/// Starts a peer of the calling app: the app's own image as a new task and client,
/// owned by the caller, run until it waits in `receive`; its endpoint handle.
pub(crate) fn start_peer() -> Result<u64, Errno> {
    let owner = ClientId(CURRENT.load(Ordering::Relaxed));
    let image = with(|m| m.app_image);
    let (entry, segments) = crate::elf::parse(image).ok_or(Errno::EINVAL)?;
    let id = new_client(ClientSpec::DEFAULT, None)?;
    with(|m| m.owned.insert(id.0, owner.0));
    let loaded = segments
        .iter()
        .try_for_each(|s| place(id, s.vaddr, s.bytes, s.memsz, s.prot).map(|_| ()))
        .and_then(|()| app_stack(id));
    let (Some(stack_top), Some(space)) = (loaded, with(|m| m.space_of(id))) else {
        return Err(Errno::ENOMEM); // its client ends with the app
    };
    let ep = with(|m| {
        m.endpoints.push(Endpoint {
            space: Some(space),
            client: Some(id),
            owner: Some(owner),
            running: true,
            ..Endpoint::default()
        });
        (m.endpoints.len() - 1) as u32
    });
    // Its first run: from the entry point, in peer mode, to its first `receive`.
    let code = run_task(Entry {
        space,
        endpoint: ep,
        client: Some(id),
        regs: TrapFrame::start(entry, stack_top, AppMode::Peer as u64, 0, false),
    });
    let code = code.unwrap_or(0);
    with(|m| {
        let e = &mut m.endpoints[ep as usize];
        e.running = false;
        e.dead = code != RECEIVED;
    });
    if code != RECEIVED {
        return Err(Errno::ESRCH);
    }
    Ok(u64::from(ep))
}
