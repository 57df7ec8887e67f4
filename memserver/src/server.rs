//! [`Server`]: the memory server's state, in named parts, and the one dispatch of every
//! request to the module that answers it.

use crate::accounting::Accounting;
use crate::client_state::ClientState;
use crate::config::Config;
use crate::file::{Eviction, PagerLink};
use crate::frame_alloc::FrameAllocator;
use crate::kernel_stub::KernelStub;
use crate::mem::Mem;
use crate::object::ObjectTable;
use alloc::collections::BTreeMap;
use ipc_proto::{
    ClientId, Errno, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, PAGE_SIZE, PROTOCOL_MAJOR, PROTOCOL_MINOR,
    Reply, Request, Response, ServerInfo, ServerStats, decode_request, encode_response,
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

/// The memory server core.
pub struct Server<K: KernelStub> {
    pub(crate) cfg: Config,
    /// Frames, the stub, and the page-table frames lent to it.
    pub(crate) mem: Mem<K>,
    /// Every client's address space, fds and limits.
    pub(crate) clients: BTreeMap<ClientId, ClientState<K::Space>>,
    /// Every memory object, with its name and file indexes.
    pub(crate) objects: ObjectTable,
    /// System-wide counts the limits are checked against.
    pub(crate) accounting: Accounting,
    /// The file server, once connected, and its traffic.
    pub(crate) pager: PagerLink,
    /// Where the page-cache clock stands and what it must spare.
    pub(crate) eviction: Eviction,
    /// Requests after which the self-check found a violated invariant.
    violations: u32,
}

impl<K: KernelStub> Server<K> {
    /// A server owning the banks and devices of `cfg`, driving `stub`.
    pub fn new(cfg: Config, stub: K) -> Server<K> {
        let frames = FrameAllocator::new(&cfg.banks);
        Server {
            accounting: Accounting::new(cfg.max_open_files),
            cfg,
            mem: Mem {
                stub,
                frames,
                lent: alloc::collections::BTreeSet::new(),
            },
            clients: BTreeMap::new(),
            objects: ObjectTable::new(),
            pager: PagerLink::default(),
            eviction: Eviction::default(),
            violations: 0,
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

    /// Routes a request to its handler: who may send it is decided here, once.
    fn dispatch(&mut self, sender: Sender, req: &Request) -> Response {
        use Request as R;
        let done = |r: Result<(), Errno>| r.map(|()| Reply::Done);
        let client = match sender {
            Sender::Client(id) => Some(id),
            Sender::Kernel => None,
        };
        match (client, req) {
            // Anyone.
            (_, &R::Hello { major, .. }) => self.hello(major),
            (_, R::Stats) => Ok(Reply::Stats(self.stats())),
            // The kernel only.
            (
                None,
                &R::PageFault {
                    client,
                    addr,
                    access,
                },
            ) => self
                .fault(client, addr, access)
                .map(|outcome| match outcome {
                    None => Reply::FaultResolved,
                    Some(sig) => Reply::Signal(sig),
                }),
            (None, &R::ClientStarted { client, spec }) => done(self.client_started(client, spec)),
            (
                None,
                &R::ClientCloned {
                    parent,
                    child,
                    spec,
                },
            ) => done(self.client_cloned(parent, child, spec)),
            (None, &R::ClientExited { client }) => done(self.client_exited(client)),
            (None, _) => Err(Errno::EPERM),
            // A client, for everything else.
            (
                Some(_),
                R::PageFault { .. }
                | R::ClientStarted { .. }
                | R::ClientCloned { .. }
                | R::ClientExited { .. },
            ) => Err(Errno::EPERM),
            (Some(id), _) if !self.clients.contains_key(&id) => Err(Errno::ESRCH),
            (Some(id), R::Mmap(args)) => self.mmap(id, args).map(|addr| Reply::Mapped { addr }),
            (Some(id), &R::Munmap { addr, len }) => done(self.munmap(id, addr, len)),
            (Some(id), &R::Mprotect { addr, len, prot }) => {
                done(self.mprotect(id, addr, len, prot))
            }
            (Some(id), &R::Msync { addr, len, flags }) => done(self.msync(id, addr, len, flags)),
            (Some(id), &R::Mlock { addr, len }) => done(self.mlock(id, addr, len, true)),
            (Some(id), &R::Munlock { addr, len }) => done(self.mlock(id, addr, len, false)),
            (Some(id), &R::Mlockall { flags }) => done(self.mlockall(id, flags)),
            (Some(id), R::Munlockall) => done(self.munlockall(id)),
            (Some(id), R::ShmOpen { name, oflag, mode }) => {
                self.shm_open(id, name, *oflag, *mode).map(Reply::Fd)
            }
            (Some(id), R::ShmUnlink { name }) => done(self.shm_unlink(id, name)),
            (Some(id), &R::Ftruncate { fd, len }) => done(self.ftruncate(id, fd, len)),
            (Some(id), &R::Close { fd }) => done(self.close(id, fd)),
            (Some(id), &R::Fstat { fd }) => self.fstat(id, fd).map(Reply::Stat),
            (Some(id), R::OpenBank { name }) => self.open_bank(id, name).map(Reply::Fd),
            (Some(id), R::OpenDevice { name, oflag }) => {
                self.open_device(id, name, *oflag).map(Reply::Fd)
            }
            (Some(id), R::FileOpen { path, oflag }) => {
                self.file_open(id, path, *oflag).map(Reply::Fd)
            }
            (
                Some(id),
                &R::Mremap {
                    old_addr,
                    old_len,
                    new_len,
                    flags,
                    new_addr,
                },
            ) => self
                .mremap(id, old_addr, old_len, new_len, flags, new_addr)
                .map(|addr| Reply::Mapped { addr }),
            (Some(id), &R::Madvise { addr, len, advice }) => {
                done(self.madvise(id, addr, len, advice))
            }
            (Some(id), &R::Regions { after }) => Ok(Reply::Region(self.region_after(id, after))),
            (Some(id), &R::PageInfo { addr }) => Ok(Reply::PageInfo(self.page_info(id, addr))),
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
}
