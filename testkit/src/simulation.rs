//! [`Machine`]: the server plus a simulated CPU and kernel, so a whole system runs in one
//! process: clients start and exit, send encoded requests, and read and write their
//! memory through the page tables, with faults forwarded to the server exactly as a
//! kernel would forward them.

use crate::model_stub::ModelStub;
use ipc_proto::{Access, ClientId, ClientSpec, Errno, PAGE_SIZE, Reply, Request, Signal};
use memserver::{Config, Frame, KernelStub, Sender, Server};

/// What the simulated CPU needs beyond the stub: an MMU walk and frame contents.
pub trait SimulatedCpu: KernelStub {
    /// The frame `vaddr` reaches with `access` in `space`, or `None` if the CPU would
    /// fault (not present, or not allowed).
    fn translate(&self, space: Self::Space, vaddr: u64, access: Access) -> Option<Frame>;
    /// Reads a byte of a frame.
    fn load(&self, frame: Frame, offset: usize) -> u8;
    /// Writes a byte of a frame.
    fn store(&mut self, frame: Frame, offset: usize, value: u8);
}

/// A server with its simulated hardware and kernel.
pub struct Machine<K: KernelStub> {
    /// The server under test.
    pub server: Server<K>,
    next_client: u32,
    /// Faults the server said were resolved but that fault again at once: a server bug
    /// that would hang a real client. Tests assert it stays zero.
    pub livelocks: u32,
}

impl<K: SimulatedCpu> Machine<K> {
    /// A machine running a server with `cfg` over `stub`.
    pub fn new(cfg: Config, stub: K) -> Machine<K> {
        Machine {
            server: Server::new(cfg, stub),
            next_client: 1,
            livelocks: 0,
        }
    }

    /// Starts a client, announcing it to the server as the kernel does.
    pub fn spawn(&mut self, spec: ClientSpec) -> Result<ClientId, Errno> {
        let id = ClientId(self.next_client);
        self.next_client += 1;
        self.server
            .handle(Sender::Kernel, &Request::ClientStarted { client: id, spec })?;
        Ok(id)
    }

    /// Clones `parent` (the memory half of `fork`): a new client with a copy-on-write
    /// copy of its address space and its fds, announced as the kernel does.
    pub fn fork(&mut self, parent: ClientId, spec: ClientSpec) -> Result<ClientId, Errno> {
        let child = ClientId(self.next_client);
        self.next_client += 1;
        self.server.handle(
            Sender::Kernel,
            &Request::ClientCloned {
                parent,
                child,
                spec,
            },
        )?;
        Ok(child)
    }

    /// Ends a client (exit or crash: the same for the server).
    pub fn exit(&mut self, id: ClientId) -> Result<(), Errno> {
        self.server
            .handle(Sender::Kernel, &Request::ClientExited { client: id })
            .map(|_| ())
    }

    /// One encoded request from `id`; the encoded response goes to `out`.
    pub fn call(&mut self, id: ClientId, request: &[u8], out: &mut [u8]) -> usize {
        self.server.handle_message(Sender::Client(id), request, out)
    }

    /// The frame `addr` of `id` reaches with `access`, faulting as needed.
    pub fn access(&mut self, id: ClientId, addr: u64, access: Access) -> Result<Frame, Signal> {
        let space = self.server.space_of(id).ok_or(Signal::Segv)?;
        // Two faults can be legitimate (e.g. read-install then copy-on-write); more
        // means the server resolves without installing.
        for _ in 0..3 {
            if let Some(f) = self.server.stub().translate(space, addr, access) {
                return Ok(f);
            }
            let fault = Request::PageFault {
                client: id,
                addr,
                access,
            };
            match self.server.handle(Sender::Kernel, &fault) {
                Ok(Reply::FaultResolved) => continue,
                Ok(Reply::Signal(sig)) => return Err(sig),
                _ => return Err(Signal::Segv),
            }
        }
        self.livelocks += 1;
        Err(Signal::Segv)
    }

    /// A user-mode byte read by `id` at `addr`.
    pub fn read(&mut self, id: ClientId, addr: u64) -> Result<u8, Signal> {
        let f = self.access(id, addr, Access::Read)?;
        Ok(self.server.stub().load(f, (addr % PAGE_SIZE) as usize))
    }

    /// A user-mode byte write by `id` at `addr`.
    pub fn write(&mut self, id: ClientId, addr: u64, value: u8) -> Result<(), Signal> {
        let f = self.access(id, addr, Access::Write)?;
        self.server
            .stub_mut()
            .store(f, (addr % PAGE_SIZE) as usize, value);
        Ok(())
    }

    /// An instruction fetch by `id` at `addr`.
    pub fn exec(&mut self, id: ClientId, addr: u64) -> Result<(), Signal> {
        self.access(id, addr, Access::Exec).map(|_| ())
    }
}

impl SimulatedCpu for ModelStub {
    fn translate(&self, space: u32, vaddr: u64, access: Access) -> Option<Frame> {
        let (f, a) = self.query(space, vaddr & !(PAGE_SIZE - 1))?;
        let ok = match access {
            Access::Read => true,
            Access::Write => a.writable,
            Access::Exec => a.executable,
        };
        ok.then_some(f)
    }

    fn load(&self, frame: Frame, offset: usize) -> u8 {
        self.read_byte(frame, offset)
    }

    fn store(&mut self, frame: Frame, offset: usize, value: u8) {
        self.write_byte(frame, offset, value);
    }
}
