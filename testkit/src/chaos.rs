//! Arbitrary operation sequences against a whole [`Machine`], checking every invariant
//! after every step: the engine of the server fuzzer and of the soak tests.
//!
//! Bytes are read as a program: each operation takes an opcode byte and its arguments
//! from the input, clients come and go, addresses mostly fall in a small window so that
//! mappings overlap, split and merge, and a few raw garbage messages are thrown in. At
//! the end every name is unlinked and every client exits, after which every frame must be
//! free again.

use crate::simulation::{Machine, SimulatedCpu};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ipc_proto::{
    Access, Advice, ClientId, ClientSpec, Fd, Limits, MapFlags, MlockallFlags, MmapArgs, Mode,
    MremapFlags, MsyncFlags, OFlags, ObjName, PAGE_SIZE, Prot, Request, ShmName,
};
use memserver::{Config, Pager, PagerCounters, Sender, StandardLayout};

/// The configuration the chaos runs use: small, so limits and exhaustion are reached.
pub fn config() -> Config {
    // Contiguous physical layout (dma, normal, fb0) so the real stub can simulate it.
    let mut cfg = Config::standard(StandardLayout::contiguous(0x100, 8, 96, 16));
    // A small window, so placed mappings land where the random addresses fall.
    cfg.mmap_min = WINDOW - 4 * PAGE_SIZE;
    cfg.mmap_max = WINDOW + 68 * PAGE_SIZE;
    cfg.max_shm_objects = 4;
    cfg.max_open_files = 12;
    cfg.max_object_size = 64 * PAGE_SIZE;
    cfg
}

/// Where the interesting addresses are.
const WINDOW: u64 = 0x10_0000;

/// A cursor over the input bytes; reads past the end give zeroes.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// An address: usually a page in a 64-page window at 1 MiB, sometimes anything.
    fn addr(&mut self) -> u64 {
        match self.u8() % 8 {
            0 => self.u64(),
            1 => 0,
            _ => WINDOW + u64::from(self.u8() % 64) * PAGE_SIZE + u64::from(self.u8() % 2) * 7,
        }
    }
    /// A length: usually a few pages, sometimes anything.
    fn len(&mut self) -> u64 {
        match self.u8() % 8 {
            0 => self.u64(),
            1 => 0,
            _ => u64::from(self.u8() % 8 + 1) * PAGE_SIZE - u64::from(self.u8() % 2),
        }
    }
}

/// Runs the program in `data`; `Err` describes the first broken invariant.
pub fn run<K: SimulatedCpu>(stub: K, data: &[u8]) -> Result<(), String> {
    run_with_pager(stub, data, None).map(|_| ())
}

/// [`run`], with `pager` as the server's file server: the programs then also open
/// [`FILE_PATHS`] and map, write, sync, truncate and close them, under the same memory
/// pressure (a pager that fails some requests is fair game too). Returns the pager
/// traffic, so a caller can tell the file paths were exercised.
pub fn run_with_pager<K: SimulatedCpu>(
    stub: K,
    data: &[u8],
    pager: Option<alloc::boxed::Box<dyn Pager>>,
) -> Result<PagerCounters, String> {
    let mut m = Machine::new(config(), stub);
    if let Some(p) = pager {
        m.server.set_pager(p).map_err(|e| format!("pager: {e:?}"))?;
    }
    let total = m.server.stats().total_frames;
    let mut input = Input(data);
    // The tear-down's root client exists from the start: once the programs have used all
    // memory, a new client could not get a page-table root (a legitimate ENOMEM).
    let root = m
        .spawn(ClientSpec {
            uid: 0,
            ..ClientSpec::DEFAULT
        })
        .map_err(|e| format!("root client: {e:?}"))?;
    let mut clients: Vec<ClientId> = Vec::new();
    let mut step = 0u32;
    while !input.is_empty() && step < 2000 {
        step += 1;
        let op = input.u8();
        if clients.is_empty() || op % 29 == 0 {
            if clients.len() < 4 {
                let spec = spec(&mut input);
                // With every frame in use a new client cannot get a page-table root:
                // ENOMEM is the right answer then, anything else a bug.
                match m.spawn(spec) {
                    Ok(id) => clients.push(id),
                    Err(ipc_proto::Errno::ENOMEM) => {}
                    Err(e) => return Err(format!("spawn: {e:?}")),
                }
            }
            continue;
        }
        let who = clients[usize::from(input.u8()) % clients.len()];
        match op % 29 {
            1 => {
                let i = usize::from(input.u8()) % clients.len();
                let id = clients.swap_remove(i);
                m.exit(id).map_err(|e| format!("exit: {e:?}"))?;
            }
            2..=5 => {
                let req = request(&mut input, op);
                let req = aim(&mut m, who, req, &mut input);
                let _ = m.server.handle(Sender::Client(who), &req);
            }
            6 => {
                let _ = m.read(who, input.addr());
            }
            7 => {
                let _ = m.write(who, input.addr(), input.u8());
            }
            8 => {
                let _ = m.exec(who, input.addr());
            }
            9 => {
                // A fault the kernel reports directly, for any client and address.
                let access =
                    [Access::Read, Access::Write, Access::Exec][usize::from(input.u8() % 3)];
                let req = Request::PageFault {
                    client: who,
                    addr: input.addr(),
                    access,
                };
                let _ = m.server.handle(Sender::Kernel, &req);
            }
            11 if clients.len() < 4 => {
                // fork: a copy-on-write clone of `who`.
                let spec = spec(&mut input);
                if let Ok(child) = m.fork(who, spec) {
                    clients.push(child);
                }
            }
            12 => {
                // A file opened and mapped at once, somewhere in the window (replacing
                // whatever was there), shared or private, read-only or writable.
                let path = FILE_PATHS[usize::from(input.u8()) % FILE_PATHS.len()];
                let b = input.u8();
                let oflag = if b & 1 != 0 {
                    OFlags::RDWR
                } else {
                    OFlags::RDONLY
                };
                let open = Request::FileOpen {
                    path: ipc_proto::FilePath::new(path).map_err(|e| format!("{e:?}"))?,
                    oflag,
                };
                if let Ok(ipc_proto::Reply::Fd(fd)) = m.server.handle(Sender::Client(who), &open) {
                    let shared = b & 2 != 0;
                    // Sometimes big and populated: memory runs out, cached pages go.
                    let (pages, populate) = match b & 16 {
                        0 => (input.u8() % 8 + 1, MapFlags::empty()),
                        _ => (input.u8() % 64 + 1, MapFlags::POPULATE),
                    };
                    let args = MmapArgs {
                        addr: WINDOW + u64::from(input.u8() % 64) * PAGE_SIZE,
                        len: u64::from(pages) * PAGE_SIZE,
                        prot: if b & 4 != 0 {
                            Prot::READ | Prot::WRITE
                        } else {
                            Prot::READ
                        },
                        flags: MapFlags::FIXED
                            | populate
                            | if shared {
                                MapFlags::SHARED
                            } else {
                                MapFlags::PRIVATE
                            },
                        fd: Some(fd),
                        offset: u64::from(b >> 5) * PAGE_SIZE,
                    };
                    let addr = args.addr;
                    let _ = m.server.handle(Sender::Client(who), &Request::Mmap(args));
                    // Writes to a few of its pages (dirty ones, if shared).
                    let t = input.u8();
                    for i in 0..u64::from(t % 4) {
                        let _ = m.write(who, addr + i * PAGE_SIZE + u64::from(t), t);
                    }
                    if b & 8 != 0 {
                        let _ = m.server.handle(Sender::Client(who), &Request::Close { fd });
                    }
                }
            }
            10 => {
                // Garbage straight off the wire.
                let n = usize::from(input.u8() % 48);
                let bytes: Vec<u8> = (0..n).map(|_| input.u8()).collect();
                let mut out = [0u8; ipc_proto::MAX_RESPONSE_LEN];
                let _ = m.call(who, &bytes, &mut out);
            }
            _ => {
                let req = request(&mut input, op);
                let req = aim(&mut m, who, req, &mut input);
                let _ = m.server.handle(Sender::Client(who), &req);
            }
        }
        m.server
            .check_invariants()
            .map_err(|e| format!("step {step} (op {op}): {e}"))?;
        if m.livelocks != 0 {
            return Err(format!("step {step}: a resolved fault faulted again"));
        }
    }
    // Tear down: unlink every name as root, end every client.
    for n in NAMES {
        let name = ShmName::new(n).map_err(|e| format!("{e:?}"))?;
        let _ = m
            .server
            .handle(Sender::Client(root), &Request::ShmUnlink { name });
    }
    clients.push(root);
    for id in clients {
        m.exit(id).map_err(|e| format!("final exit: {e:?}"))?;
    }
    m.server.check_invariants()?;
    let s = m.server.stats();
    if s.free_frames != total || s.shm_objects != 0 || s.clients != 0 {
        return Err(format!("leak after all clients exited: {s:?}"));
    }
    Ok(m.server.pager_counters())
}

const NAMES: [&str; 3] = ["/a", "/b", "/c"];

/// The files the programs open: the conformance fixture's names, and `/chaos/big`, which
/// a pager may make bigger than memory so that mapping it forces evictions (a missing
/// file is fine: `ENOENT`).
pub const FILE_PATHS: [&str; 6] = [
    "/conf/text",
    "/conf/msync",
    "/conf/trunc",
    "/conf/secret",
    "/conf/none",
    "/chaos/big",
];

fn spec(input: &mut Input<'_>) -> ClientSpec {
    let b = input.u8();
    ClientSpec {
        uid: [0, 1000, 1001][usize::from(b % 3)],
        gid: [0, 1000, 1001][usize::from((b >> 2) % 3)],
        deny_wx: b & 0x10 != 0,
        banks: if b & 0x20 != 0 { 1 } else { u32::MAX },
        devices: if b & 0x40 != 0 { 0 } else { u32::MAX },
        limits: if b & 0x80 != 0 {
            Limits {
                max_regions: u32::from(input.u8() % 16) + 1,
                max_bytes: u64::from(input.u8()) * PAGE_SIZE,
                max_fds: u32::from(input.u8() % 6),
                max_locked: u64::from(input.u8() % 16) * PAGE_SIZE,
            }
        } else {
            Limits::DEFAULT
        },
    }
}

/// Points most `mremap`s and `madvise`s at one of the client's mappings (found with a
/// `Regions` request), so that they act rather than fail on a hole; other requests pass
/// through unchanged.
fn aim<K: SimulatedCpu>(
    m: &mut Machine<K>,
    who: ClientId,
    req: Request,
    input: &mut Input<'_>,
) -> Request {
    let pick = input.u8();
    if pick.is_multiple_of(4) || !matches!(req, Request::Mremap { .. } | Request::Madvise { .. }) {
        return req;
    }
    let after = WINDOW + u64::from(pick % 64) * PAGE_SIZE;
    let found = match m
        .server
        .handle(Sender::Client(who), &Request::Regions { after })
    {
        Ok(ipc_proto::Reply::Region(Some(r))) => r,
        _ => return req,
    };
    // A page inside the mapping, its start more often than not.
    let pages = (found.end - found.start) / PAGE_SIZE;
    let at = found.start + u64::from(input.u8() % 2) * (u64::from(pick) % pages) * PAGE_SIZE;
    match req {
        Request::Mremap {
            old_len,
            new_len,
            flags,
            new_addr,
            ..
        } => Request::Mremap {
            old_addr: at,
            // Often the rest of the mapping, so a move or growth is of one mapping.
            old_len: if pick & 0x40 == 0 {
                found.end - at
            } else {
                old_len
            },
            new_len,
            flags,
            new_addr,
        },
        Request::Madvise { len, advice, .. } => Request::Madvise {
            addr: at,
            len,
            advice,
        },
        other => other,
    }
}

/// An address from the input, page-aligned unless `raw` says otherwise (one time in 8).
fn aligned_mostly(input: &mut Input<'_>, raw: u8) -> u64 {
    let a = input.addr();
    if raw.is_multiple_of(8) {
        a
    } else {
        a & !(PAGE_SIZE - 1)
    }
}

fn request(input: &mut Input<'_>, op: u8) -> Request {
    let name = || ShmName::new(NAMES[usize::from(op) % 3]).expect("valid name");
    // Mostly the first few fds (a client's opens start at 3), sometimes any number.
    let fd = match input.u8() % 8 {
        0 => Fd(u32::from(input.u8())),
        n => Fd(2 + u32::from(n % 4)),
    };
    match op % 21 {
        0..=2 => {
            let flags = match input.u8() % 6 {
                0 => MapFlags::from_bits_truncate(input.u32()),
                1 => MapFlags::SHARED | MapFlags::ANONYMOUS,
                // Of an fd: a shm object, a file, a bank or a device, whichever it is.
                2 => MapFlags::SHARED,
                3 => MapFlags::PRIVATE,
                _ => MapFlags::PRIVATE | MapFlags::ANONYMOUS,
            } | if input.u8().is_multiple_of(3) {
                MapFlags::FIXED
            } else {
                MapFlags::empty()
            };
            Request::Mmap(MmapArgs {
                addr: input.addr(),
                len: input.len(),
                prot: Prot::from_bits_truncate(u32::from(input.u8())),
                flags,
                fd: if input.u8().is_multiple_of(2) {
                    None
                } else {
                    Some(fd)
                },
                offset: if input.u8().is_multiple_of(4) {
                    input.u64()
                } else {
                    0
                },
            })
        }
        3 | 4 => Request::Munmap {
            addr: input.addr(),
            len: input.len(),
        },
        5 | 6 => Request::Mprotect {
            addr: input.addr(),
            len: input.len(),
            prot: Prot::from_bits_truncate(u32::from(input.u8())),
        },
        7 => Request::Msync {
            addr: input.addr(),
            len: input.len(),
            flags: MsyncFlags::from_bits_truncate(u32::from(input.u8())),
        },
        8 => Request::Mlock {
            addr: input.addr(),
            len: input.len(),
        },
        9 => Request::Munlock {
            addr: input.addr(),
            len: input.len(),
        },
        10 => Request::Mlockall {
            flags: MlockallFlags::from_bits_truncate(u32::from(input.u8())),
        },
        11 => Request::Munlockall,
        12 => Request::ShmOpen {
            name: name(),
            oflag: OFlags::from_bits_truncate(u32::from(input.u8()) | (u32::from(input.u8()) << 6)),
            mode: Mode::from_raw((u32::from(input.u8()) * 3) & Mode::MASK).unwrap_or_default(),
        },
        13 => Request::ShmUnlink { name: name() },
        14 => Request::Ftruncate {
            fd,
            len: u64::from(input.u8() % 80) * 1000,
        },
        15 => Request::Close { fd },
        16 => Request::Fstat { fd },
        17 => match input.u8() % 4 {
            0 => Request::OpenBank {
                name: ObjName::new("dma").expect("valid name"),
            },
            1 | 2 => Request::FileOpen {
                path: ipc_proto::FilePath::new(FILE_PATHS[usize::from(input.u8()) % 5])
                    .expect("valid path"),
                oflag: OFlags::from_bits_truncate(
                    u32::from(input.u8() % 4) | (u32::from(input.u8() % 2) << 9),
                ),
            },
            _ => Request::OpenDevice {
                name: ObjName::new("fb0").expect("valid name"),
                oflag: OFlags::from_bits_truncate(u32::from(input.u8() % 4)),
            },
        },
        18 => {
            // Mostly aligned addresses and valid flag mixes, so that moves, growths and
            // shrinks really happen; sometimes anything.
            let raw = input.u8();
            let old_addr = aligned_mostly(input, raw);
            let old_len = input.len();
            let flags_pick = raw % 7;
            // DONTUNMAP needs equal lengths.
            let new_len = if raw.is_multiple_of(5) || flags_pick == 3 {
                old_len
            } else {
                input.len()
            };
            let flags = match flags_pick {
                0 => MremapFlags::from_bits_truncate(u32::from(input.u8())),
                1 => MremapFlags::empty(),
                2 => MremapFlags::MAYMOVE | MremapFlags::FIXED,
                3 => MremapFlags::MAYMOVE | MremapFlags::DONTUNMAP,
                _ => MremapFlags::MAYMOVE,
            };
            Request::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr: aligned_mostly(input, raw >> 3),
            }
        }
        19 => {
            let raw = input.u8();
            Request::Madvise {
                addr: aligned_mostly(input, raw),
                len: input.len(),
                advice: Advice::ALL[usize::from(input.u8()) % Advice::ALL.len()],
            }
        }
        _ => Request::Regions {
            after: input.addr(),
        },
    }
}
