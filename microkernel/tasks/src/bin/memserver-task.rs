//! The memory server as a ring-3 task: the `memserver` crate on its IPC loop. It owns no
//! hardware: every page-table change, frame fill and copy is a system call to the
//! kernel, which applies it with the real `kernel-stub` after the stub's own capability
//! checks. The kernel starts it with its heap already mapped, sends its configuration
//! first, then every client's request and its own `PageFault` / `ClientStarted` /
//! `ClientExited` messages, each answered before the next arrives.
//!
//! Built for the host (it is a workspace member) it is a stub that says so.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the memory server task runs under the microkernel: run `cargo xtask qemu`");
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod task {
    use ipc_proto::ClientId;
    use memserver::{Config, Frame, KernelStub, PageAttrs, Sender, Server, StubError};
    use microkernel_abi::{Control, Header, NONE, StubStatus};
    use ms_tasks::sys::{self, Sysnum};

    /// The entry: `heap` and `heap_len` name the heap the kernel mapped for the task.
    #[unsafe(no_mangle)]
    extern "C" fn task_main(heap: u64, heap_len: u64) -> ! {
        // SAFETY: the kernel mapped exactly this heap read-write, populated, for this
        // task alone, and enters it once.
        unsafe {
            ms_tasks::rt::serve(
                heap,
                heap_len,
                // A request, or the configuration (at most a page, see the kernel's loader).
                ipc_proto::MAX_REQUEST_LEN.max(4096),
                ipc_proto::MAX_RESPONSE_LEN,
                || None,
                handle,
            )
        }
    }

    /// One message: the configuration (the first control message) makes the server;
    /// then the control messages, and the requests of the kernel and of clients.
    fn handle(
        server: &mut Option<Server<RemoteStub>>,
        sender: Header,
        message: &[u8],
        out: &mut [u8],
    ) -> usize {
        match (sender, server.as_mut()) {
            (Header::Control, None) => {
                if let Ok(cfg) = postcard::from_bytes::<Config>(message) {
                    let mut s = Server::new(cfg, RemoteStub);
                    // Its pager is the file server task, through the kernel; a fresh
                    // server cannot refuse it.
                    let _ = s.set_pager(alloc::boxed::Box::new(pager_call));
                    *server = Some(s);
                }
                0
            }
            (Header::Control, Some(s)) => match message.first().map(|&b| Control::try_from(b)) {
                // Check everything now, answering with the first violation's description
                // (or nothing).
                Some(Ok(Control::CheckNow)) => match s.check_invariants() {
                    Ok(()) => 0,
                    Err(e) => {
                        let e = e.as_bytes();
                        let n = e.len().clamp(1, out.len());
                        out[..n].copy_from_slice(&e[..n.min(e.len())]);
                        n
                    }
                },
                Some(Ok(Control::SelfCheckOn)) => {
                    s.set_self_check(true);
                    0
                }
                Some(Ok(Control::SelfCheckOff)) => {
                    s.set_self_check(false);
                    0
                }
                Some(Err(_)) | None => 0,
            },
            (_, None) => 0,
            (sender, Some(s)) => {
                let sender = match sender {
                    Header::Client(c) => Sender::Client(ClientId(c)),
                    _ => Sender::Kernel,
                };
                s.handle_message(sender, message, out)
            }
        }
    }

    /// One pager round trip to the file server task (the kernel carries it).
    fn pager_call(request: &[u8], reply: &mut [u8]) -> Result<usize, ipc_proto::Errno> {
        let r = call(
            Sysnum::PagerCall,
            request.as_ptr() as u64,
            request.len() as u64,
            reply.as_mut_ptr() as u64,
            reply.len() as u64,
        );
        sys::check(r).map(|n| n as usize)
    }

    /// The kernel stub, reached through system calls; spaces are the kernel's handles.
    struct RemoteStub;

    fn unpack(v: u64) -> (Frame, PageAttrs) {
        (Frame(v >> 12), PageAttrs::from_bits(v))
    }

    fn stub_result(code: u64) -> Result<(), StubError> {
        match StubStatus::from(code) {
            StubStatus::Ok => Ok(()),
            StubStatus::OutOfTableFrames => Err(StubError::OutOfTableFrames),
            StubStatus::OutOfSpaces => Err(StubError::OutOfSpaces),
            StubStatus::Refused => Err(StubError::Refused),
        }
    }

    fn call(n: Sysnum, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
        sys::syscall(n, a0, a1, a2, a3)
    }

    impl KernelStub for RemoteStub {
        type Space = u32;

        fn create_space(&mut self) -> Result<u32, StubError> {
            match call(Sysnum::CreateSpace, 0, 0, 0, 0) {
                NONE => Err(StubError::OutOfSpaces),
                h if h == NONE - 1 => Err(StubError::OutOfTableFrames),
                h => Ok(h as u32),
            }
        }

        fn destroy_space(&mut self, space: u32) {
            call(Sysnum::DestroySpace, u64::from(space), 0, 0, 0);
        }

        fn map(
            &mut self,
            space: u32,
            vaddr: u64,
            frame: Frame,
            attrs: PageAttrs,
        ) -> Result<(), StubError> {
            stub_result(call(
                Sysnum::Map,
                u64::from(space),
                vaddr,
                frame.0,
                attrs.bits(),
            ))
        }

        fn unmap(&mut self, space: u32, vaddr: u64, pages: u64) {
            call(Sysnum::Unmap, u64::from(space), vaddr, pages, 0);
        }

        fn protect(&mut self, space: u32, vaddr: u64, pages: u64, attrs: PageAttrs) {
            call(
                Sysnum::Protect,
                u64::from(space),
                vaddr,
                pages,
                attrs.bits(),
            );
        }

        fn query(&self, space: u32, vaddr: u64) -> Option<(Frame, PageAttrs)> {
            match call(Sysnum::Query, u64::from(space), vaddr, 0, 0) {
                NONE => None,
                v => Some(unpack(v)),
            }
        }

        fn for_each_mapping(&self, space: u32, f: &mut dyn FnMut(u64, Frame, PageAttrs)) {
            const BATCH: usize = 1024;
            let mut entries = [0u64; 2 * BATCH];
            let mut from = 0;
            loop {
                let n = call(
                    Sysnum::Mappings,
                    u64::from(space),
                    from,
                    entries.as_mut_ptr() as u64,
                    BATCH as u64,
                ) as usize;
                let n = n.min(BATCH);
                for e in entries[..2 * n].chunks_exact(2) {
                    let (frame, attrs) = unpack(e[1]);
                    f(e[0], frame, attrs);
                }
                match entries[..2 * n].chunks_exact(2).last() {
                    Some(last) if n == BATCH => from = last[0] + ipc_proto::PAGE_SIZE,
                    _ => return,
                }
            }
        }

        fn zero_frame(&mut self, frame: Frame) {
            call(Sysnum::ZeroFrame, frame.0, 0, 0, 0);
        }

        fn copy_frame(&mut self, src: Frame, dst: Frame) {
            call(Sysnum::CopyFrame, src.0, dst.0, 0, 0);
        }

        fn fill_frame(&mut self, frame: Frame, data: &[u8]) {
            let n = data.len().min(ipc_proto::PAGE_SIZE as usize);
            call(
                Sysnum::FillFrame,
                frame.0,
                data.as_ptr() as u64,
                n as u64,
                0,
            );
        }

        fn read_frame(&self, frame: Frame, out: &mut [u8]) {
            let n = out.len().min(ipc_proto::PAGE_SIZE as usize);
            if call(
                Sysnum::ReadFrame,
                frame.0,
                out.as_mut_ptr() as u64,
                n as u64,
                0,
            ) != 0
            {
                out.fill(0);
            }
        }

        fn donate_table_frame(&mut self, frame: Frame) -> Result<(), StubError> {
            stub_result(call(Sysnum::Donate, frame.0, 0, 0, 0))
        }

        fn reclaim_table_frame(&mut self) -> Option<Frame> {
            match call(Sysnum::Reclaim, 0, 0, 0, 0) {
                NONE => None,
                f => Some(Frame(f)),
            }
        }
    }
}
