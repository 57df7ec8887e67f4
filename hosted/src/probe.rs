//! Memory accesses that report the signal they raise instead of dying: what the
//! conformance agent uses to touch a client's window for real. A test tool, not part of
//! the runtime: the runtime installs no signal handler; [`install`] puts one in for
//! the probes only, and hands every other fault on to the default action.

use ipc_proto::Signal;

core::arch::global_asm!(
    r#"
.text
.global ms_probe_read
ms_probe_read:
    movzx eax, byte ptr [rdi]
    ret
.global ms_probe_write
ms_probe_write:
    xor eax, eax
.global ms_probe_write_at
ms_probe_write_at:
    mov byte ptr [rdi], sil
    ret
.global ms_probe_exec
ms_probe_exec:
    call rdi
    xor eax, eax
    ret
.global ms_probe_recover
ms_probe_recover:
    ret
.global ms_probe_recover_exec
ms_probe_recover_exec:
    add rsp, 8
    ret
"#
);

unsafe extern "C" {
    fn ms_probe_read(addr: u64) -> u64;
    fn ms_probe_write(addr: u64, value: u64) -> u64;
    fn ms_probe_exec(addr: u64) -> u64;
    static ms_probe_write_at: u8;
    static ms_probe_recover: u8;
    static ms_probe_recover_exec: u8;
}

fn result(v: u64) -> Result<u8, Signal> {
    if v & 0x100 == 0 {
        Ok(v as u8)
    } else if v as u8 == Signal::Bus.number() {
        Err(Signal::Bus)
    } else {
        Err(Signal::Segv)
    }
}

/// Reads the byte at `addr`.
pub fn read(addr: u64) -> Result<u8, Signal> {
    // SAFETY: a one-byte read; a fault there is resolved by the server or turned by the
    // probe handler into a return through the recovery point.
    result(unsafe { ms_probe_read(addr) })
}

/// Writes the byte at `addr`.
pub fn write(addr: u64, value: u8) -> Result<(), Signal> {
    // SAFETY: as for `read`: only `addr` is written, and only if the page allows.
    result(unsafe { ms_probe_write(addr, u64::from(value)) }).map(|_| ())
}

/// Calls into the page at `addr` (whose byte must be `ret`).
pub fn exec(addr: u64) -> Result<(), Signal> {
    // SAFETY: as for `read`; the code at `addr` is one `ret`.
    result(unsafe { ms_probe_exec(addr) }).map(|_| ())
}

extern "C" fn on_fault(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext pointers to an SA_SIGINFO
    // handler; only their fields are read and the saved RIP/RAX written.
    let (addr, regs) = unsafe {
        (
            (*info).si_addr() as u64,
            &mut (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs,
        )
    };
    let rip = regs[libc::REG_RIP as usize] as u64;
    // SAFETY: only the probes' addresses are taken.
    let (read_at, write_at, recover, recover_exec) = unsafe {
        (
            ms_probe_read as *const () as u64,
            &ms_probe_write_at as *const u8 as u64,
            &ms_probe_recover as *const u8 as u64,
            &ms_probe_recover_exec as *const u8 as u64,
        )
    };
    // A fetch fault (the probe called into the page) has RIP at the page; a signal the
    // server sent (no address) arrives with RIP at the faulting instruction too.
    let fetch = rip == addr && rip != read_at && rip != write_at;
    if rip == read_at || rip == write_at || fetch {
        let number = if sig == libc::SIGBUS {
            Signal::Bus.number()
        } else {
            Signal::Segv.number()
        };
        regs[libc::REG_RAX as usize] = (0x100 | u64::from(number)) as i64;
        regs[libc::REG_RIP as usize] = (if fetch { recover_exec } else { recover }) as i64;
        return;
    }
    // Not a probe: the default action, as if no handler were there.
    // SAFETY: resetting a disposition is async-signal-safe; the access faults again.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Installs the probes' handler for `SIGSEGV` and `SIGBUS`.
pub fn install() {
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe and takes
        // SA_SIGINFO's three arguments.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}
