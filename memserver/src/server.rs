//! [`Server`]: the state of the memory server and the dispatch of every request.

use crate::config::Config;
use crate::fd::{FdTable, FdTarget};
use crate::frame_alloc::FrameAllocator;
use crate::kernel_stub::{Frame, KernelStub};
use crate::mem::Mem;
use crate::object::{MemObject, ObjectId};
use crate::region_map::RegionMap;
use alloc::collections::BTreeMap;
use alloc::string::String;
use ipc_proto::{
    ClientId, ClientSpec, Errno, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, PAGE_SIZE, PROTOCOL_MAJOR,
    PROTOCOL_MINOR, Reply, Request, Response, ServerInfo, ServerStats, decode_request,
    encode_response,
};

/// Who sent a request: the kernel (faults, client lifecycle) or a client. The transport
/// says which; a client cannot claim to be the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The kernel (or, hosted, the runtime acting for it).
    Kernel,
    /// An application.
    Client(ClientId),
}

/// Everything the server knows about one client.
pub(crate) struct Client<S> {
    pub spec: ClientSpec,
    pub space: S,
    pub regions: RegionMap,
    /// Private pages (anonymous memory, copy-on-write copies) by page address.
    pub anon: BTreeMap<u64, Frame>,
    pub fds: FdTable,
    pub mapped_bytes: u64,
    pub locked_bytes: u64,
    /// `mlockall(MCL_FUTURE)` is in force.
    pub lock_future: bool,
    /// ... with `MCL_ONFAULT`: lock without populating.
    pub lock_onfault: bool,
}

/// The memory server core.
pub struct Server<K: KernelStub> {
    pub(crate) cfg: Config,
    pub(crate) mem: Mem<K>,
    pub(crate) clients: BTreeMap<ClientId, Client<K::Space>>,
    pub(crate) objects: BTreeMap<ObjectId, MemObject>,
    pub(crate) names: BTreeMap<String, ObjectId>,
    pub(crate) next_object: u64,
    /// Open fds of every client plus anonymous shared objects (`ENFILE` bound).
    pub(crate) open_files: u32,
    pub(crate) violations: u32,
    /// The file server, once connected.
    pub(crate) pager: crate::file::PagerLink,
    /// File objects by their pager key: one object (one page cache) per file.
    pub(crate) files: BTreeMap<ipc_proto::ObjectKey, ObjectId>,
    pub(crate) pager_counters: crate::file::PagerCounters,
    /// The range an `mlock`/`mlockall` is populating before it marks it locked: eviction
    /// spares it as if it were locked already.
    pub(crate) pinning: Option<(ClientId, u64, u64)>,
    /// Where the next eviction starts looking: just past the last page evicted.
    pub(crate) evict_hand: (ObjectId, u64),
}

impl<K: KernelStub> Server<K> {
    /// A server owning the banks and devices of `cfg`, driving `stub`.
    pub fn new(cfg: Config, stub: K) -> Server<K> {
        let frames = FrameAllocator::new(&cfg.banks);
        Server {
            cfg,
            mem: Mem {
                stub,
                frames,
                lent: alloc::collections::BTreeSet::new(),
            },
            clients: BTreeMap::new(),
            objects: BTreeMap::new(),
            names: BTreeMap::new(),
            next_object: 1,
            open_files: 0,
            violations: 0,
            pager: Default::default(),
            files: BTreeMap::new(),
            pager_counters: Default::default(),
            pinning: None,
            evict_hand: (ObjectId(0), 0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Turns the check of every invariant after every request on or off (on in tests and
    /// conformance runs; off to time the server's own work).
    pub fn set_self_check(&mut self, on: bool) {
        self.cfg.self_check = on;
    }

    /// The kernel stub (for the in-process runtime's simulated MMU).
    pub fn stub(&self) -> &K {
        &self.mem.stub
    }

    /// The kernel stub, mutable.
    pub fn stub_mut(&mut self) -> &mut K {
        &mut self.mem.stub
    }

    /// The address space of `client`.
    pub fn space_of(&self, client: ClientId) -> Option<K::Space> {
        self.clients.get(&client).map(|c| c.space)
    }

    /// Known clients.
    pub fn clients(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.clients.keys().copied()
    }

    /// Server-wide counters.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            total_frames: self.mem.frames.total_frames(),
            free_frames: self.mem.frames.free_frames(),
            table_frames: self.mem.lent.len() as u64,
            shm_objects: self.objects.len() as u32,
            clients: self.clients.len() as u32,
            violations: self.violations,
        }
    }

    /// Decodes one request, handles it and encodes the response into `out`
    /// (which must hold [`MAX_RESPONSE_LEN`] bytes); returns the response length.
    ///
    /// Oversized input is `EMSGSIZE`, undecodable input `EBADMSG`/`EINVAL`; the server
    /// state is untouched by either.
    pub fn handle_message(&mut self, sender: Sender, bytes: &[u8], out: &mut [u8]) -> usize {
        let resp = if bytes.len() > MAX_REQUEST_LEN {
            Err(Errno::EMSGSIZE)
        } else {
            decode_request(bytes).and_then(|req| self.handle(sender, &req))
        };
        encode_response(&resp, out).unwrap_or_else(|_| {
            // Only a too-small `out` can fail; answer with the shortest error there is.
            encode_response(&Err(Errno::EMSGSIZE), out).unwrap_or(0)
        })
    }

    /// Handles one decoded request.
    pub fn handle(&mut self, sender: Sender, req: &Request) -> Response {
        let resp = self.dispatch(sender, req);
        if self.cfg.self_check && self.check_after_request().is_err() {
            self.violations = self.violations.saturating_add(1);
        }
        resp
    }

    fn dispatch(&mut self, sender: Sender, req: &Request) -> Response {
        let id = match (sender, req) {
            // Requests anyone may send.
            (_, Request::Hello { major, .. }) => return self.hello(*major),
            (_, Request::Stats) => return Ok(Reply::Stats(self.stats())),
            // Requests only the kernel may send.
            (
                Sender::Kernel,
                &Request::PageFault {
                    client,
                    addr,
                    access,
                },
            ) => {
                return self
                    .fault(client, addr, access)
                    .map(|outcome| match outcome {
                        None => Reply::FaultResolved,
                        Some(sig) => Reply::Signal(sig),
                    });
            }
            (Sender::Kernel, &Request::ClientExited { client }) => {
                return self.client_exited(client).map(|()| Reply::Done);
            }
            (Sender::Kernel, &Request::ClientStarted { client, spec }) => {
                return self.client_started(client, spec).map(|()| Reply::Done);
            }
            (
                Sender::Kernel,
                &Request::ClientCloned {
                    parent,
                    child,
                    spec,
                },
            ) => {
                return self
                    .client_cloned(parent, child, spec)
                    .map(|()| Reply::Done);
            }
            (Sender::Kernel, _)
            | (
                Sender::Client(_),
                Request::PageFault { .. }
                | Request::ClientExited { .. }
                | Request::ClientStarted { .. }
                | Request::ClientCloned { .. },
            ) => return Err(Errno::EPERM),
            (Sender::Client(id), _) => id,
        };
        if !self.clients.contains_key(&id) {
            return Err(Errno::ESRCH);
        }
        self.client_request(id, req)
    }

    fn client_request(&mut self, id: ClientId, req: &Request) -> Response {
        let done = |r: Result<(), Errno>| r.map(|()| Reply::Done);
        match *req {
            Request::Mmap(ref args) => self.mmap(id, args).map(|addr| Reply::Mapped { addr }),
            Request::Munmap { addr, len } => done(self.munmap(id, addr, len)),
            Request::Mprotect { addr, len, prot } => done(self.mprotect(id, addr, len, prot)),
            Request::Msync { addr, len, flags } => done(self.msync(id, addr, len, flags)),
            Request::Mlock { addr, len } => done(self.mlock(id, addr, len, true)),
            Request::Munlock { addr, len } => done(self.mlock(id, addr, len, false)),
            Request::Mlockall { flags } => done(self.mlockall(id, flags)),
            Request::Munlockall => done(self.munlockall(id)),
            Request::ShmOpen {
                ref name,
                oflag,
                mode,
            } => self.shm_open(id, name, oflag, mode).map(Reply::Fd),
            Request::ShmUnlink { ref name } => done(self.shm_unlink(id, name)),
            Request::Ftruncate { fd, len } => done(self.ftruncate(id, fd, len)),
            Request::Close { fd } => done(self.close(id, fd)),
            Request::Fstat { fd } => self.fstat(id, fd).map(Reply::Stat),
            Request::OpenBank { ref name } => self.open_bank(id, name).map(Reply::Fd),
            Request::OpenDevice { ref name, oflag } => {
                self.open_device(id, name, oflag).map(Reply::Fd)
            }
            Request::FileOpen { ref path, oflag } => self.file_open(id, path, oflag).map(Reply::Fd),
            Request::Regions { after } => Ok(Reply::Region(self.region_after(id, after))),
            Request::PageInfo { addr } => Ok(Reply::PageInfo(self.page_info(id, addr))),
            // Handled in `dispatch`.
            Request::Hello { .. }
            | Request::Stats
            | Request::PageFault { .. }
            | Request::ClientExited { .. }
            | Request::ClientStarted { .. }
            | Request::ClientCloned { .. } => Err(Errno::EPERM),
        }
    }

    fn hello(&self, major: u16) -> Response {
        if major != PROTOCOL_MAJOR {
            return Err(Errno::EPROTO);
        }
        Ok(Reply::Hello(ServerInfo {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            page_size: PAGE_SIZE as u32,
            max_request: MAX_REQUEST_LEN as u16,
            max_response: MAX_RESPONSE_LEN as u16,
        }))
    }

    /// Registers a client (the kernel's `ClientStarted`).
    pub(crate) fn client_started(&mut self, id: ClientId, spec: ClientSpec) -> Result<(), Errno> {
        if self.clients.contains_key(&id) {
            return Err(Errno::EEXIST);
        }
        let space = self.new_space()?;
        let client = Client {
            spec,
            space,
            regions: RegionMap::new(self.cfg.mmap_min, self.cfg.mmap_max),
            anon: BTreeMap::new(),
            fds: FdTable::new(self.cfg.first_fd),
            mapped_bytes: 0,
            locked_bytes: 0,
            lock_future: false,
            lock_onfault: false,
        };
        self.clients.insert(id, client);
        Ok(())
    }

    /// A fresh address space, lending the stub a frame for its root table if needed.
    pub(crate) fn new_space(&mut self) -> Result<K::Space, Errno> {
        self.mem.stub.create_space().or_else(|_| {
            self.mem.lend_table_frame().map_err(|_| Errno::ENOMEM)?;
            self.mem.stub.create_space().map_err(|_| Errno::ENOMEM)
        })
    }

    /// Reclaims everything a client held (the kernel's `ClientExited`).
    pub(crate) fn client_exited(&mut self, id: ClientId) -> Result<(), Errno> {
        let (lo, hi) = match self.clients.get(&id) {
            Some(c) => (
                c.regions.iter().next().map_or(0, |r| r.start),
                c.regions.iter().next_back().map_or(0, |r| r.end),
            ),
            None => return Err(Errno::ESRCH),
        };
        if hi > lo {
            self.release_range(id, lo, hi);
        }
        let Some(mut c) = self.clients.remove(&id) else {
            return Err(Errno::ESRCH);
        };
        let mut closed = alloc::vec::Vec::new();
        c.fds.drain(|e| closed.push(e));
        for e in closed {
            self.drop_fd_entry(e.target, e.writable);
        }
        self.mem.stub.destroy_space(c.space);
        self.mem.reclaim_table_frames();
        Ok(())
    }

    /// Forgets one open fd's references.
    pub(crate) fn drop_fd_entry(&mut self, target: FdTarget, writable: bool) {
        self.open_files = self.open_files.saturating_sub(1);
        if let FdTarget::Shm(obj) = target {
            if let Some(o) = self.objects.get_mut(&obj) {
                o.open_fds -= 1;
                if writable {
                    o.writers -= 1;
                }
            }
            self.destroy_if_orphan(obj);
        }
    }

    /// Frees an object nobody refers to any more.
    pub(crate) fn destroy_if_orphan(&mut self, obj: ObjectId) {
        if !self.objects.get(&obj).is_some_and(MemObject::is_orphan) {
            return;
        }
        let Some(o) = self.objects.remove(&obj) else {
            return;
        };
        if o.anonymous {
            self.open_files = self.open_files.saturating_sub(1);
        }
        self.release_file(&o);
        for (_, f) in o.pages {
            self.mem.release(f);
        }
    }
}
