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
    use alloc::vec;
    use ipc_proto::ClientId;
    use memserver::{Config, Frame, KernelStub, PageAttrs, Sender, Server, StubError};
    use ms_tasks::sys::{self, nr};

    /// The entry: `heap` and `heap_len` name the heap the kernel mapped for the task.
    #[unsafe(no_mangle)]
    extern "C" fn task_main(heap: u64, heap_len: u64) -> ! {
        // SAFETY: the kernel mapped exactly this range read-write, populated, for this
        // task alone, and starts the task once.
        unsafe { ms_tasks::rt::init_heap(heap, heap_len) };
        let mut buf = vec![0u8; 8 + 4096];
        let mut out = vec![0u8; ipc_proto::MAX_RESPONSE_LEN];
        let mut server: Option<Server<RemoteStub>> = None;
        let mut reply = 0;
        loop {
            let n = sys::receive(&out[..reply], &mut buf).min(buf.len());
            reply = 0;
            if n < 8 {
                continue;
            }
            let sender = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
            let message = &buf[8..n];
            match (sender, server.as_mut()) {
                // The configuration, then switches of the after-every-request check.
                (nr::CONTROL, None) => {
                    if let Ok(cfg) = postcard::from_bytes::<Config>(message) {
                        let mut s = Server::new(cfg, RemoteStub);
                        // Its pager is the file server task, through the kernel; a
                        // fresh server cannot refuse it.
                        let _ = s.set_pager(alloc::boxed::Box::new(pager_call));
                        server = Some(s);
                    }
                }
                // 0 / 1: the check after every request off / on; 2: check everything
                // now, answering with the first violation's description (or nothing).
                (nr::CONTROL, Some(s)) => match message.first() {
                    Some(&2) => {
                        if let Err(e) = s.check_invariants() {
                            let e = e.as_bytes();
                            reply = e.len().clamp(1, out.len());
                            out[..reply].copy_from_slice(&e[..reply.min(e.len())]);
                        }
                    }
                    Some(&on) => s.set_self_check(on == 1),
                    None => {}
                },
                (_, None) => {}
                (sender, Some(s)) => {
                    let sender = match sender {
                        0 => Sender::Kernel,
                        c => Sender::Client(ClientId(c as u32)),
                    };
                    reply = s.handle_message(sender, message, &mut out);
                }
            }
        }
    }

    /// One pager round trip to the file server task (the kernel carries it).
    fn pager_call(request: &[u8], reply: &mut [u8]) -> Result<usize, ipc_proto::Errno> {
        let r = call(
            nr::PAGER_CALL,
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
        match code {
            0 => Ok(()),
            1 => Err(StubError::OutOfTableFrames),
            2 => Err(StubError::OutOfSpaces),
            _ => Err(StubError::Refused),
        }
    }

    fn call(n: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
        sys::syscall(n, a0, a1, a2, a3)
    }

    impl KernelStub for RemoteStub {
        type Space = u32;

        fn create_space(&mut self) -> Result<u32, StubError> {
            match call(nr::CREATE_SPACE, 0, 0, 0, 0) {
                nr::NONE => Err(StubError::OutOfSpaces),
                h if h == nr::NONE - 1 => Err(StubError::OutOfTableFrames),
                h => Ok(h as u32),
            }
        }

        fn destroy_space(&mut self, space: u32) {
            call(nr::DESTROY_SPACE, u64::from(space), 0, 0, 0);
        }

        fn map(
            &mut self,
            space: u32,
            vaddr: u64,
            frame: Frame,
            attrs: PageAttrs,
        ) -> Result<(), StubError> {
            stub_result(call(
                nr::MAP,
                u64::from(space),
                vaddr,
                frame.0,
                attrs.bits(),
            ))
        }

        fn unmap(&mut self, space: u32, vaddr: u64, pages: u64) {
            call(nr::UNMAP, u64::from(space), vaddr, pages, 0);
        }

        fn protect(&mut self, space: u32, vaddr: u64, pages: u64, attrs: PageAttrs) {
            call(nr::PROTECT, u64::from(space), vaddr, pages, attrs.bits());
        }

        fn query(&self, space: u32, vaddr: u64) -> Option<(Frame, PageAttrs)> {
            match call(nr::QUERY, u64::from(space), vaddr, 0, 0) {
                nr::NONE => None,
                v => Some(unpack(v)),
            }
        }

        fn for_each_mapping(&self, space: u32, f: &mut dyn FnMut(u64, Frame, PageAttrs)) {
            const BATCH: usize = 1024;
            let mut entries = [0u64; 2 * BATCH];
            let mut from = 0;
            loop {
                let n = call(
                    nr::MAPPINGS,
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
            call(nr::ZERO_FRAME, frame.0, 0, 0, 0);
        }

        fn copy_frame(&mut self, src: Frame, dst: Frame) {
            call(nr::COPY_FRAME, src.0, dst.0, 0, 0);
        }

        fn fill_frame(&mut self, frame: Frame, data: &[u8]) {
            let n = data.len().min(ipc_proto::PAGE_SIZE as usize);
            call(nr::FILL_FRAME, frame.0, data.as_ptr() as u64, n as u64, 0);
        }

        fn read_frame(&self, frame: Frame, out: &mut [u8]) {
            let n = out.len().min(ipc_proto::PAGE_SIZE as usize);
            if call(
                nr::READ_FRAME,
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
            stub_result(call(nr::DONATE, frame.0, 0, 0, 0))
        }

        fn reclaim_table_frame(&mut self) -> Option<Frame> {
            match call(nr::RECLAIM, 0, 0, 0, 0) {
                nr::NONE => None,
                f => Some(Frame(f)),
            }
        }
    }
}
