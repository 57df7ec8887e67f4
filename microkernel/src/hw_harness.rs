//! The conformance harness over the memory server task: the kernel's own clients
//! (`HwProcess`) whose every memory access is a ring-3 run of the agent page, for the
//! checks the kernel runs itself and the cases the apps run through system calls.

use crate::{
    endpoint::{check_all, end_client, new_client, server_call, stats},
    page_fault::LAST_TASK_FAULT,
    run::{load_space, restore},
    state::{CURRENT, with},
};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use client_lib::Transport;
use conformance::harness::{Facts, Harness, MemoryAccess, Process};
use core::sync::atomic::Ordering;
use ipc_proto::{ClientId, ClientSpec, Errno, ServerStats, Signal};
use microkernel_abi::AccessOp;
use microkernel_abi::Header;

/// Makes `op` at `addr` as `client`: a ring-3 run of the agent page with the client's
/// space loaded, so the MMU checks user, present, writable and no-execute exactly as for
/// any task, and a page fault takes the same path to the server as any task's.
pub(crate) fn access(client: ClientId, addr: u64, op: AccessOp) -> Result<u8, Signal> {
    let space = with(|m| m.space_of(client)).ok_or(Signal::Segv)?;
    let saved = load_space(space).ok_or(Signal::Segv)?;
    // What runs now (the kernel, or the app whose system call this is) resumes after.
    let outer_client = CURRENT.swap(client.0, Ordering::Relaxed);
    let outer_fault = LAST_TASK_FAULT.swap(u64::MAX, Ordering::Relaxed);
    let r = crate::user::run_agent(op, addr);
    CURRENT.store(outer_client, Ordering::Relaxed);
    LAST_TASK_FAULT.store(outer_fault, Ordering::Relaxed);
    restore(saved);
    r
}

/// One client of the bare-metal server.
pub struct HwProcess {
    id: ClientId,
}

impl Transport for HwProcess {
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
        let reply = server_call(Header::Client(self.id.0), request)?;
        let out = response.get_mut(..reply.len()).ok_or(Errno::EMSGSIZE)?;
        out.copy_from_slice(&reply);
        Ok(reply.len())
    }
}

impl MemoryAccess for HwProcess {
    fn read(&mut self, addr: u64) -> Result<u8, Signal> {
        access(self.id, addr, AccessOp::Read)
    }
    fn write(&mut self, addr: u64, value: u8) -> Result<(), Signal> {
        access(self.id, addr, AccessOp::Write(value)).map(|_| ())
    }
    fn exec(&mut self, addr: u64) -> Result<(), Signal> {
        access(self.id, addr, AccessOp::Exec).map(|_| ())
    }
}

impl Process for HwProcess {
    fn transport(&mut self) -> &mut dyn Transport {
        self
    }

    fn fork(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let child = new_client(spec, Some(self.id))?;
        Ok(Box::new(HwProcess { id: child }))
    }
}

impl Drop for HwProcess {
    fn drop(&mut self) {
        end_client(self.id);
    }
}

/// The kernel's own harness over the server task, for the checks it runs itself.
pub struct HwHarness;

impl Harness for HwHarness {
    fn name(&self) -> &str {
        "qemu"
    }

    fn facts(&self) -> Facts {
        with(|m| conformance::inproc::facts_of(&m.cfg, true))
    }

    fn spawn(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let id = new_client(spec, None)?;
        Ok(Box::new(HwProcess { id }))
    }

    fn stats(&mut self) -> ServerStats {
        stats()
    }

    fn check(&mut self) -> Result<(), String> {
        check_all()
    }

    fn unique_name(&self, base: &str) -> String {
        format!("/qemu-{base}")
    }
}

/// This machine's conformance `Facts`, encoded for an app's runner (`facts`).
pub(crate) fn encoded_facts() -> Result<alloc::vec::Vec<u8>, Errno> {
    let facts = with(|m| conformance::inproc::facts_of(&m.cfg, true));
    let mut buf = [0u8; 512];
    let bytes = postcard::to_slice(&facts, &mut buf).map_err(|_| Errno::EPROTO)?;
    Ok(bytes.to_vec())
}

/// How many cases of the suite the apps run when each of `apps` apps takes case `i`
/// where `i % modulus` is its index (`modulus` is `apps` times the smoke run's stride).
pub(crate) fn case_count(modulus: u64, apps: u64) -> usize {
    let all = conformance::cases::everything().len() as u64;
    (0..all).filter(|i| i % modulus.max(1) < apps).count()
}
