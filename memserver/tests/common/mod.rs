//! A test system: a server over the model stub, with client transports.
#![allow(dead_code)]

use client_lib::{Client, Transport};
use ipc_proto::{ClientId, ClientSpec, Errno, Signal};
use memserver::{Config, StandardLayout};
use memserver_testkit::Machine;
use memserver_testkit::ModelStub;
use std::cell::RefCell;
use std::rc::Rc;

pub const P: u64 = 4096;

pub type Sys = Rc<RefCell<Machine<ModelStub>>>;

pub fn config(frames: u64) -> Config {
    let mut cfg = Config::standard(StandardLayout::contiguous(0x100, 64, frames, 256));
    cfg.self_check = true;
    cfg
}

pub fn system(frames: u64) -> Sys {
    Rc::new(RefCell::new(Machine::new(config(frames), ModelStub::new())))
}

/// One client of a test system over the stub `K` (the model stub unless said).
pub struct Proc<K: memserver_testkit::SimulatedCpu = ModelStub> {
    pub sys: Rc<RefCell<Machine<K>>>,
    pub id: ClientId,
}

impl<K: memserver_testkit::SimulatedCpu> Transport for Proc<K> {
    fn call(&mut self, req: &[u8], resp: &mut [u8]) -> Result<usize, Errno> {
        Ok(self.sys.borrow_mut().call(self.id, req, resp))
    }
}

pub fn spawn(sys: &Sys, spec: ClientSpec) -> Client<Proc> {
    let id = sys.borrow_mut().spawn(spec).unwrap();
    Client::new(Proc {
        sys: sys.clone(),
        id,
    })
}

pub fn read(c: &mut Client<Proc>, addr: u64) -> Result<u8, Signal> {
    let id = c.transport().id;
    c.transport().sys.borrow_mut().read(id, addr)
}

pub fn write(c: &mut Client<Proc>, addr: u64, v: u8) -> Result<(), Signal> {
    let id = c.transport().id;
    c.transport().sys.borrow_mut().write(id, addr, v)
}

pub fn check(sys: &Sys) {
    let m = sys.borrow();
    m.server.check_invariants().unwrap();
    assert_eq!(m.server.stats().violations, 0);
    assert_eq!(m.livelocks, 0);
}

/// A small deterministic generator (xorshift64*), so a failing run is reproducible from
/// its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
