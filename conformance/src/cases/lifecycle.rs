//! Client start and exit: the handshake, and exit reclaiming everything.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use ipc_proto::{PROTOCOL_MAJOR, Reply, Request};

cases![
    hello_reports_version_page_size_and_limits,
    hello_with_another_major_version_is_eproto,
    exit_returns_every_frame,
    exit_closes_fds_and_frees_unlinked_objects,
    exit_keeps_named_objects,
    exit_releases_locked_memory,
    many_clients_come_and_go_without_leaks,
];

fn hello_reports_version_page_size_and_limits(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let info = client(&mut *p).hello().ctx("hello")?;
    ensure_eq!(info.major, PROTOCOL_MAJOR);
    ensure_eq!(u64::from(info.page_size), P);
    ensure_eq!(usize::from(info.max_request), ipc_proto::MAX_REQUEST_LEN);
    ensure_eq!(usize::from(info.max_response), ipc_proto::MAX_RESPONSE_LEN);
    Ok(())
}

fn hello_with_another_major_version_is_eproto(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let r = client(&mut *p).call(&Request::Hello {
        major: PROTOCOL_MAJOR + 1,
        minor: 0,
    });
    ensure_eq!(r, Err(Errno::EPROTO));
    ensure!(
        matches!(client(&mut *p).call(&Request::Stats), Ok(Reply::Stats(_))),
        "server stopped answering"
    );
    Ok(())
}

fn exit_returns_every_frame(h: &mut dyn Harness) -> Outcome {
    let before = free_frames(h);
    let mut p = proc(h)?;
    let a = anon(&mut *p, 16 * P, RW)?;
    for i in 0..16 {
        poke(&mut *p, a + i * P, 1)?;
    }
    client(&mut *p)
        .mmap(0, 4 * P, RW, PA | MapFlags::POPULATE, None, 0)
        .ctx("populate")?;
    let s = client(&mut *p)
        .mmap(0, 2 * P, RW, SA, None, 0)
        .ctx("shared anon")?;
    poke(&mut *p, s, 1)?;
    ensure!(
        free_frames(h) < before || !h.facts().exclusive,
        "nothing was allocated"
    );
    drop(p);
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || after == before,
        "free frames {before} before, {after} after exit"
    );
    Ok(())
}

fn exit_closes_fds_and_frees_unlinked_objects(h: &mut dyn Harness) -> Outcome {
    let objects = h.stats().shm_objects;
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "exit-fd", 2 * P)?;
    let a = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("map")?;
    poke(&mut *p, a, 1)?;
    client(&mut *p).shm_unlink(&name).ctx("unlink")?;
    ensure_eq!(h.stats().shm_objects, objects + 1);
    drop(p);
    ensure_eq!(h.stats().shm_objects, objects);
    Ok(())
}

fn exit_keeps_named_objects(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "exit-named", P)?;
    let a = map_shared(&mut *p, fd, P, RW, 0).ctx("map")?;
    poke(&mut *p, a + 3, 0x3e)?;
    drop(p);
    let mut q = proc(h)?;
    let fq = client(&mut *q)
        .shm_open(&name, OFlags::RDONLY, 0)
        .ctx("reopen")?;
    let b = map_shared(&mut *q, fq, P, Prot::READ, 0).ctx("map")?;
    ensure_eq!(peek(&mut *q, b + 3)?, 0x3e);
    client(&mut *q).shm_unlink(&name).ctx("unlink")
}

fn exit_releases_locked_memory(h: &mut dyn Harness) -> Outcome {
    let before = free_frames(h);
    let mut p = proc(h)?;
    let a = anon(&mut *p, 4 * P, RW)?;
    client(&mut *p).mlock(a, 4 * P).ctx("mlock")?;
    client(&mut *p)
        .mlockall(ipc_proto::MlockallFlags::CURRENT | ipc_proto::MlockallFlags::FUTURE)
        .ctx("mlockall")?;
    drop(p);
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || after == before,
        "free frames {before} before, {after} after"
    );
    Ok(())
}

fn many_clients_come_and_go_without_leaks(h: &mut dyn Harness) -> Outcome {
    let before = free_frames(h);
    let clients = h.stats().clients;
    for round in 0..20u64 {
        let mut p = proc(h)?;
        let a = anon(&mut *p, (round % 4 + 1) * P, RW)?;
        poke(&mut *p, a, round as u8)?;
        if round % 3 == 0 {
            let b = client(&mut *p).mmap(0, P, RW, SA, None, 0).ctx("shared")?;
            poke(&mut *p, b, 1)?;
        }
    }
    ensure_eq!(h.stats().clients, clients);
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || after == before,
        "free frames {before} before, {after} after 20 clients"
    );
    Ok(())
}
