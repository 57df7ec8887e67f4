//! [`Mem`]: the frame allocator and the kernel stub together, with the few operations
//! every part of the server needs (allocate a zeroed frame, install a page, free).

use crate::frame_alloc::{BankId, FrameAllocator, FrameUse};
use crate::kernel_stub::{Frame, KernelStub, PageAttrs, StubError};
use alloc::collections::BTreeSet;

/// Physical memory and the right to map it.
pub struct Mem<K> {
    /// The kernel stub.
    pub stub: K,
    /// The frames the server owns.
    pub frames: FrameAllocator,
    /// Frames currently lent to the stub for page tables.
    pub lent: BTreeSet<Frame>,
}

impl<K: KernelStub> Mem<K> {
    /// A frame from bank `b` for `use_`, zeroed, reference count 1.
    pub fn alloc_zeroed(&mut self, b: BankId, use_: FrameUse) -> Option<Frame> {
        let f = self.frames.alloc(b, use_)?;
        self.stub.zero_frame(f);
        Some(f)
    }

    /// A frame from bank `b` for `use_` holding a copy of `src`, reference count 1.
    pub fn alloc_copy(&mut self, b: BankId, use_: FrameUse, src: Frame) -> Option<Frame> {
        let f = self.frames.alloc(b, use_)?;
        self.stub.copy_frame(src, f);
        Some(f)
    }

    /// Drops one holder of `f`, telling the stub when it was the last.
    pub fn release(&mut self, f: Frame) {
        if self.frames.decref(f) {
            self.stub.frame_freed(f);
        }
    }

    /// Installs `frame` at `vaddr`, lending the stub page-table frames as it asks.
    /// Fails only when no frame is left for a page table.
    pub fn install(
        &mut self,
        space: K::Space,
        vaddr: u64,
        frame: Frame,
        attrs: PageAttrs,
    ) -> Result<(), StubError> {
        loop {
            match self.stub.map(space, vaddr, frame, attrs) {
                Err(StubError::OutOfTableFrames) => self.lend_table_frame()?,
                other => return other,
            }
        }
    }

    /// Lends the stub one zeroed frame of the default bank for page tables.
    pub fn lend_table_frame(&mut self) -> Result<(), StubError> {
        let f = self
            .alloc_zeroed(BankId::DEFAULT, FrameUse::Table)
            .ok_or(StubError::OutOfTableFrames)?;
        match self.stub.donate_table_frame(f) {
            Ok(()) => {
                self.lent.insert(f);
                Ok(())
            }
            Err(e) => {
                self.release(f);
                Err(e)
            }
        }
    }

    /// Takes back every page-table frame the stub no longer uses.
    pub fn reclaim_table_frames(&mut self) {
        while let Some(f) = self.stub.reclaim_table_frame() {
            // Only frames we lent come back; anything else is a stub bug we refuse to
            // turn into a double free.
            if self.lent.remove(&f) {
                self.release(f);
            }
        }
    }

    /// Replaces whatever is installed at `vaddr` with `frame`.
    pub fn reinstall(
        &mut self,
        space: K::Space,
        vaddr: u64,
        frame: Frame,
        attrs: PageAttrs,
    ) -> Result<(), StubError> {
        self.stub.unmap(space, vaddr, 1);
        self.install(space, vaddr, frame, attrs)
    }
}

#[cfg(test)]
mod tests {
    //! The notices a stub that keeps frame contents of its own relies on: every frame
    //! whose last holder lets go is reported freed exactly once, and objects report
    //! their size changes and their end.
    use crate::KernelStub;
    use crate::config::{Config, FrameRange};
    use crate::server::{Sender, Server};
    use crate::test_stub::TestStub;
    use ipc_proto::{
        Access, ClientId, ClientSpec, Fd, MapFlags, MmapArgs, OFlags, Prot, Reply, Request, ShmName,
    };

    const P: u64 = 4096;
    const C: ClientId = ClientId(1);

    fn server() -> Server<TestStub> {
        let cfg = Config::with_ram(alloc::vec![FrameRange {
            start: 100,
            count: 64
        }]);
        let mut s = Server::new(cfg, TestStub::default());
        let started = Request::ClientStarted {
            client: C,
            spec: ClientSpec::DEFAULT,
        };
        assert_eq!(s.handle(Sender::Kernel, &started), Ok(Reply::Done));
        s
    }

    fn map(s: &mut Server<TestStub>, flags: MapFlags, fd: Option<Fd>, pages: u64) -> u64 {
        let args = MmapArgs {
            addr: 0,
            len: pages * P,
            prot: Prot::READ | Prot::WRITE,
            flags,
            fd,
            offset: 0,
        };
        match s.handle(Sender::Client(C), &Request::Mmap(args)) {
            Ok(Reply::Mapped { addr }) => addr,
            other => panic!("mmap: {other:?}"),
        }
    }

    fn touch(s: &mut Server<TestStub>, addr: u64, pages: u64) {
        for i in 0..pages {
            let fault = Request::PageFault {
                client: C,
                addr: addr + i * P,
                access: Access::Write,
            };
            assert_eq!(s.handle(Sender::Kernel, &fault), Ok(Reply::FaultResolved));
        }
    }

    fn sorted(mut v: alloc::vec::Vec<crate::Frame>) -> alloc::vec::Vec<crate::Frame> {
        v.sort();
        v
    }

    #[test]
    fn munmap_reports_each_private_frame_freed_once() {
        let mut s = server();
        let a = map(&mut s, MapFlags::PRIVATE | MapFlags::ANONYMOUS, None, 3);
        touch(&mut s, a, 3);
        let space = s.space_of(C).expect("space");
        let mut held: alloc::vec::Vec<_> = (0..3)
            .map(|i| s.stub().query(space, a + i * P).expect("installed").0)
            .collect();
        held.sort();
        assert!(s.stub().freed.is_empty());
        let unmap = Request::Munmap {
            addr: a,
            len: 3 * P,
        };
        assert_eq!(s.handle(Sender::Client(C), &unmap), Ok(Reply::Done));
        assert_eq!(sorted(s.stub().freed.clone()), held);
    }

    #[test]
    fn madvise_dontneed_reports_the_private_frames_it_drops() {
        let mut s = server();
        let a = map(&mut s, MapFlags::PRIVATE | MapFlags::ANONYMOUS, None, 2);
        touch(&mut s, a, 2);
        let advise = Request::Madvise {
            addr: a,
            len: 2 * P,
            advice: ipc_proto::Advice::DontNeed,
        };
        assert_eq!(s.handle(Sender::Client(C), &advise), Ok(Reply::Done));
        assert_eq!(s.stub().freed.len(), 2);
    }

    #[test]
    fn a_frame_shared_by_two_mappings_is_freed_only_by_the_last() {
        let mut s = server();
        let name = ShmName::new("/notice").expect("name");
        let open = Request::ShmOpen {
            name: name.clone(),
            oflag: OFlags::CREAT | OFlags::RDWR,
            mode: ipc_proto::Mode::from_raw(0o600).expect("mode"),
        };
        let Ok(Reply::Fd(fd)) = s.handle(Sender::Client(C), &open) else {
            panic!("shm_open");
        };
        let trunc = Request::Ftruncate { fd, len: 2 * P };
        assert_eq!(s.handle(Sender::Client(C), &trunc), Ok(Reply::Done));
        let (a, b) = (
            map(&mut s, MapFlags::SHARED, Some(fd), 2),
            map(&mut s, MapFlags::SHARED, Some(fd), 2),
        );
        touch(&mut s, a, 2);
        touch(&mut s, b, 2);
        let unmap_a = Request::Munmap {
            addr: a,
            len: 2 * P,
        };
        assert_eq!(s.handle(Sender::Client(C), &unmap_a), Ok(Reply::Done));
        assert!(
            s.stub().freed.is_empty(),
            "the object still holds its pages"
        );
        // Shrinking frees the page past the new end and says so, with the new size.
        let shrink = Request::Ftruncate { fd, len: P };
        assert_eq!(s.handle(Sender::Client(C), &shrink), Ok(Reply::Done));
        assert_eq!(s.stub().freed.len(), 1);
        assert_eq!(s.stub().resized.last().map(|r| r.1), Some(P));
        let object = s.stub().resized[0].0;
        for r in [
            Request::Munmap {
                addr: b,
                len: 2 * P,
            },
            Request::Close { fd },
            Request::ShmUnlink { name },
        ] {
            assert_eq!(s.handle(Sender::Client(C), &r), Ok(Reply::Done));
        }
        assert_eq!(
            s.stub().freed.len(),
            2,
            "the last page freed with the object"
        );
        assert_eq!(s.stub().destroyed, alloc::vec![object]);
    }

    #[test]
    fn a_client_exit_frees_everything_it_alone_held() {
        let mut s = server();
        let a = map(&mut s, MapFlags::PRIVATE | MapFlags::ANONYMOUS, None, 4);
        touch(&mut s, a, 4);
        let free_before = s.stats().free_frames;
        let exited = Request::ClientExited { client: C };
        assert_eq!(s.handle(Sender::Kernel, &exited), Ok(Reply::Done));
        let returned = s.stats().free_frames - free_before;
        // Every frame that went back to the allocator was reported: data frames and the
        // stub's own are the same count here (the test stub lends no table frames).
        assert_eq!(s.stub().freed.len() as u64, returned);
        let mut f = s.stub().freed.clone();
        f.sort();
        f.dedup();
        assert_eq!(f.len() as u64, returned, "a frame reported twice");
    }
}
