//! System call dispatch: [`dispatch`] decodes the number once ([`Sysnum`]) and hands the
//! call to one function per family (a small task's, an app's, a serving task's
//! `receive`, the memory server task's kernel stub calls), each checking who may make
//! it and turning the task's addresses into [`USlice`]s before anything else.

use crate::trap::TrapFrame;
use crate::{
    endpoint::{
        check_all, end_client, endpoint_call, new_client, pager_call, peer_receive, receive,
        server_call, server_request, server_running, start_peer, stats,
    },
    hw_harness::access,
    loader::{below_agent, map_agent},
    scheduler::{task_fork, yield_now},
    state::{CURRENT, app_client, with},
    umem::{copy_in, copy_out, copy_out_capped, read_user, write_user},
    uslice::USlice,
};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use ipc_proto::{
    ClientId, ClientSpec, Errno, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, PAGE_SIZE, Reply, Request,
};
use memserver::{Frame, KernelStub, PageAttrs, StubError};
use microkernel_abi::{ACCESS_OK, AccessOp, Header, NONE, StubStatus, Sysnum, encode_result};

/// The length of the `syscall` instruction, to make a call again.
const SYSCALL_LEN: u64 = 2;

/// The most bytes a task's small buffers take: an encoded `ClientSpec`, the stats, the
/// facts, an invariant violation's text.
const SMALL: u64 = 4096;

/// Every system call, from the calling task's saved registers: the number in `rax`,
/// the arguments in `rdi`, `rsi`, `rdx`, `r10`; the frame is also where `receive`,
/// `yield` and `fork` resume it. The result for `rax` (`-errno` on failure); `exit`,
/// `receive` and `yield` do not return.
pub fn dispatch(f: &TrapFrame) -> u64 {
    let args = [f.rdi, f.rsi, f.rdx, f.r10];
    let call = match Sysnum::try_from(f.rax) {
        Ok(call) => call,
        Err(e) => return encode_result(Err(e)),
    };
    let local = matches!(
        call,
        Sysnum::Exit | Sysnum::Write | Sysnum::Yield | Sysnum::Null | Sysnum::OnSignal
    );
    if !local && !crate::scheduler::may_use_server() {
        // Another app's piece of work holds the server: this call is made again later.
        crate::scheduler::wait_for_server(f, SYSCALL_LEN);
    }
    match call {
        Sysnum::Exit => crate::user::kill(args[0]),
        Sysnum::Mmap => task_mmap(args[0], args[1], args[2]),
        Sysnum::Munmap => task_munmap(args[0], args[1]),
        Sysnum::OnSignal => {
            crate::user::set_handler(args[0]);
            0
        }
        Sysnum::Null => 0,
        Sysnum::Yield => yield_now(f),
        Sysnum::ForkTask => task_fork(f),
        Sysnum::Receive if !server_running() => peer_receive(args, f),
        Sysnum::Receive => receive(0, args, f),
        Sysnum::PagerCall => pager_call(args),
        c if c.is_stub_call() => server_syscall(c, args),
        c => app_syscall(c, args),
    }
}

/// A task's request, through the wire format as any client's.
fn task_call(req: &Request) -> Result<Reply, Errno> {
    let client = ClientId(CURRENT.load(Ordering::Relaxed));
    server_request(memserver::Sender::Client(client), req)
}

/// The `mmap` system call: anonymous memory; the address or `-errno`.
fn task_mmap(len: u64, prot: u64, flags: u64) -> u64 {
    let (Ok(prot), Ok(flags)) = (
        ipc_proto::Prot::from_raw(prot as u32),
        ipc_proto::MapFlags::from_raw(flags as u32),
    ) else {
        return encode_result(Err(Errno::EINVAL));
    };
    let args = ipc_proto::MmapArgs {
        addr: 0,
        len,
        prot,
        flags,
        fd: None,
        offset: 0,
    };
    encode_result(match task_call(&Request::Mmap(args)) {
        Ok(Reply::Mapped { addr }) => Ok(addr),
        Ok(_) => Err(Errno::EPROTO),
        Err(e) => Err(e),
    })
}

/// The `munmap` system call.
fn task_munmap(addr: u64, len: u64) -> u64 {
    encode_result(task_call(&Request::Munmap { addr, len }).map(|_| 0))
}

/// The apps' system calls (see [`Sysnum`] for each one's arguments): their requests as
/// any client's, the clients they start and their ring-3 accesses, and the server's
/// counters and invariants the runner checks after every case.
fn app_syscall(call: Sysnum, a: [u64; 4]) -> u64 {
    // The server task may only write to the console (its panic message, say).
    if server_running() && call != Sysnum::Write {
        return encode_result(Err(Errno::EPERM));
    }
    encode_result(app_call(call, a))
}

fn app_call(call: Sysnum, [a0, a1, a2, a3]: [u64; 4]) -> Result<u64, Errno> {
    match call {
        Sysnum::Write => {
            let text = USlice::new(a0, a1, SMALL)?;
            // The server's memory is never lazy; an app's may be (a forked task's text
            // is not installed until it touches it).
            let bytes = match with(|m| m.endpoints[0].space) {
                Some(s) if server_running() => with(|m| read_user(m, s, text))?,
                _ => copy_in(text)?,
            };
            crate::kprint!("{}", String::from_utf8_lossy(&bytes));
            Ok(0)
        }
        Sysnum::Call => {
            let client = app_client(a0)?;
            let request = copy_in(USlice::new(a1, a2, MAX_REQUEST_LEN as u64)?)?;
            let reply = server_call(Header::Client(client.0), &request)?;
            copy_out(
                USlice::new(a3, MAX_RESPONSE_LEN as u64, MAX_RESPONSE_LEN as u64)?,
                &reply,
            )?;
            Ok(reply.len() as u64)
        }
        Sysnum::Spawn | Sysnum::Fork => {
            let (parent, spec_at, spec_len) = match call {
                Sysnum::Spawn => (None, a0, a1),
                _ => (Some(app_client(a0)?), a1, a2),
            };
            let spec = copy_in(USlice::new(spec_at, spec_len.min(256), SMALL)?)?;
            let spec: ClientSpec = postcard::from_bytes(&spec).map_err(|_| Errno::EINVAL)?;
            let id = new_client(spec, parent)?;
            with(|m| m.owned.insert(id.0, CURRENT.load(Ordering::Relaxed)));
            Ok(u64::from(id.0))
        }
        Sysnum::End => {
            let client = app_client(a0)?;
            let peer = with(|m| m.endpoints.iter().any(|e| e.client == Some(client)));
            if a0 == 0 || peer {
                return Err(Errno::EBADF); // itself, or a peer task (it ends with its owner)
            }
            with(|m| m.owned.remove(&client.0));
            end_client(client);
            Ok(0)
        }
        Sysnum::Access => {
            if a0 == 0 {
                return Err(Errno::EINVAL); // the app's own accesses are its own
            }
            let client = app_client(a0)?;
            let op = AccessOp::decode(a1, a3)?;
            Ok(match access(client, a2, op) {
                Ok(b) => ACCESS_OK | u64::from(b),
                Err(s) => u64::from(s.number()),
            })
        }
        Sysnum::Stats => {
            let mut buf = [0u8; 128];
            let bytes = postcard::to_slice(&stats(), &mut buf).map_err(|_| Errno::EPROTO)?;
            copy_out_capped(USlice::new(a0, a1.min(SMALL), SMALL)?, bytes)
        }
        Sysnum::Check => match check_all() {
            Ok(()) => Ok(0),
            Err(e) => copy_out_capped(USlice::new(a0, a1.min(SMALL), SMALL)?, e.as_bytes())
                .map(|n| n.max(1)),
        },
        Sysnum::Facts => {
            let bytes = crate::hw_harness::encoded_facts()?;
            copy_out_capped(USlice::new(a0, a1.min(SMALL), SMALL)?, &bytes)
        }
        Sysnum::StartPeer => start_peer(),
        Sysnum::IpcCall => {
            let owner = CURRENT.load(Ordering::Relaxed);
            let ep = u32::try_from(a0).map_err(|_| Errno::EBADF)?;
            let mine = with(|m| {
                let e = m.endpoints.get(ep as usize)?;
                (ep != 0 && e.owner == Some(ClientId(owner))).then_some(())
            });
            mine.ok_or(Errno::EBADF)?;
            let message = copy_in(USlice::new(a1, a2, PAGE_SIZE)?)?;
            let reply = endpoint_call(ep, Header::Client(owner), &message)?;
            copy_out(USlice::new(a3, PAGE_SIZE, PAGE_SIZE)?, &reply)?;
            Ok(reply.len() as u64)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// The memory server task's kernel stub calls (see [`Sysnum`]) on the spaces it made
/// and the frames of its configuration; nobody else may make them.
fn server_syscall(call: Sysnum, [a0, a1, a2, a3]: [u64; 4]) -> u64 {
    if !server_running() {
        return encode_result(Err(Errno::EPERM));
    }
    let code = |r: Result<(), StubError>| {
        (match r {
            Ok(()) => StubStatus::Ok,
            Err(StubError::OutOfTableFrames) => StubStatus::OutOfTableFrames,
            Err(StubError::OutOfSpaces) => StubStatus::OutOfSpaces,
            Err(StubError::Refused) => StubStatus::Refused,
        }) as u64
    };
    let attrs = PageAttrs::from_bits;
    let pack = |f: Frame, a: PageAttrs| f.0 << 12 | a.bits();
    with(|m| {
        let space = |h: u64| m.spaces.get(h as usize).copied().flatten();
        match call {
            Sysnum::CreateSpace => match m.stub.create_space() {
                Ok(s) => {
                    let h = m.spaces.len() as u32;
                    m.spaces.push(Some(s));
                    if let Some(c) = m.binding.take() {
                        m.clients.insert(c.0, h);
                        if map_agent(m, s).is_err() {
                            crate::kprintln!("kernel: no table frames for the agent page");
                            crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
                        }
                    }
                    u64::from(h)
                }
                Err(StubError::OutOfTableFrames) => NONE - 1,
                Err(_) => NONE,
            },
            Sysnum::DestroySpace => {
                if let Some(s) = m.spaces.get_mut(a0 as usize).and_then(Option::take) {
                    m.stub.destroy_space(s);
                    m.clients.retain(|_, h| u64::from(*h) != a0);
                }
                0
            }
            Sysnum::Map => match space(a0) {
                Some(s) if m.servers_frame(a2) => code(m.stub.map(s, a1, Frame(a2), attrs(a3))),
                _ => code(Err(StubError::Refused)),
            },
            Sysnum::Unmap => {
                if let Some(s) = space(a0) {
                    m.stub.unmap(s, a1, below_agent(a1, a2));
                }
                0
            }
            Sysnum::Protect => {
                if let Some(s) = space(a0) {
                    m.stub.protect(s, a1, below_agent(a1, a2), attrs(a3));
                }
                0
            }
            // The agent page is the kernel's: the server neither sees nor changes it.
            Sysnum::Query if a1 & !0xfff == crate::user::USER_AGENT => NONE,
            Sysnum::Query => match space(a0).and_then(|s| m.stub.query(s, a1)) {
                Some((f, a)) => pack(f, a),
                None => NONE,
            },
            Sysnum::Mappings => {
                let (Some(s), Some(me)) = (space(a0), m.endpoints[0].space) else {
                    return 0;
                };
                let max = a3.min(1024) as usize;
                let mut entries: Vec<u64> = Vec::with_capacity(2 * max);
                m.stub.for_each_mapping(s, &mut |va, f, a| {
                    if va >= a1 && va != crate::user::USER_AGENT && entries.len() < 2 * max {
                        entries.push(va);
                        entries.push(pack(f, a));
                    }
                });
                let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
                let written = USlice::new(a2, bytes.len() as u64, u64::MAX)
                    .and_then(|to| write_user(m, me, to, &bytes));
                match written {
                    Ok(()) => (entries.len() / 2) as u64,
                    Err(_) => 0,
                }
            }
            Sysnum::ZeroFrame => {
                if m.servers_frame(a0) {
                    m.stub.zero_frame(Frame(a0));
                }
                0
            }
            Sysnum::CopyFrame => {
                if m.servers_frame(a0) && m.servers_frame(a1) {
                    m.stub.copy_frame(Frame(a0), Frame(a1));
                }
                0
            }
            Sysnum::FillFrame => {
                let me = m.endpoints[0].space;
                let from = USlice::new(a1, a2, PAGE_SIZE).ok();
                match me.zip(from).filter(|_| m.servers_frame(a0)) {
                    Some((me, from)) => match read_user(m, me, from) {
                        Ok(data) => {
                            m.stub.fill_frame(Frame(a0), &data);
                            0
                        }
                        Err(_) => NONE,
                    },
                    None => NONE,
                }
            }
            Sysnum::ReadFrame => {
                let me = m.endpoints[0].space;
                let to = USlice::new(a1, a2, PAGE_SIZE).ok();
                match me.zip(to).filter(|_| m.servers_frame(a0)) {
                    Some((me, to)) => {
                        let mut page = alloc::vec![0u8; to.len() as usize];
                        m.stub.read_frame(Frame(a0), &mut page);
                        match write_user(m, me, to, &page) {
                            Ok(()) => 0,
                            Err(_) => NONE,
                        }
                    }
                    None => NONE,
                }
            }
            Sysnum::Donate if m.servers_frame(a0) => code(m.stub.donate_table_frame(Frame(a0))),
            Sysnum::Donate => code(Err(StubError::Refused)),
            Sysnum::Reclaim => match m.stub.reclaim_table_frame() {
                Some(f) if m.servers_frame(f.0) => f.0,
                // One of the task's own table frames: it stays the kernel's.
                Some(f) => {
                    let _ = m.stub.donate_table_frame(f);
                    NONE
                }
                None => NONE,
            },
            _ => encode_result(Err(Errno::ENOSYS)),
        }
    })
}
