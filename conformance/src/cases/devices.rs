//! Device windows (seed 002): shared only, uncached or write-combining, never freed.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use ipc_proto::CacheMode;

cases![
    device_mapping_is_uncached_by_default,
    device_map_wc_is_write_combining,
    device_private_mapping_is_einval,
    device_exec_mapping_is_enotsup,
    device_mapping_beyond_the_window_is_enxio,
    device_without_frames_is_enodev,
    device_unknown_name_is_enoent,
    device_without_the_right_is_eacces,
    device_read_only_fd_cannot_map_writable,
    device_mappings_share_the_same_frames,
    device_map_wc_on_ram_is_enotsup,
    device_open_with_extra_flags_is_einval,
    device_frames_are_not_zeroed_between_mappings,
];

fn dev(h: &mut dyn Harness, p: &mut dyn Process, oflag: OFlags) -> Result<Fd, Fail> {
    let name = h.facts().device.0;
    client(p).open_device(&name, oflag).ctx("open_device")
}

fn device_mapping_is_uncached_by_default(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = dev(h, &mut *p, OFlags::RDWR)?;
    let a = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("map")?;
    poke(&mut *p, a + P, 1)?;
    let info = client(&mut *p).page_info(a + P).ctx("page_info")?;
    ensure!(
        info.cache == CacheMode::Uncached && info.installed && !info.executable,
        "device page is {info:?}"
    );
    Ok(())
}

fn device_map_wc_is_write_combining(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = dev(h, &mut *p, OFlags::RDWR)?;
    let a = client(&mut *p)
        .mmap(0, P, RW, MapFlags::SHARED | MapFlags::WC, Some(fd), 0)
        .ctx("map MAP_WC")?;
    poke(&mut *p, a, 1)?;
    let info = client(&mut *p).page_info(a).ctx("page_info")?;
    ensure_eq!(info.cache, CacheMode::WriteCombining);
    Ok(())
}

fn device_private_mapping_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = dev(h, &mut *p, OFlags::RDWR)?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, MapFlags::PRIVATE, Some(fd), 0),
        Errno::EINVAL,
        "private device mapping",
    )
}

fn device_exec_mapping_is_enotsup(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = dev(h, &mut *p, OFlags::RDWR)?;
    expect_err(
        map_shared(&mut *p, fd, P, Prot::READ | Prot::EXEC, 0),
        Errno::ENOTSUP,
        "executable device mapping",
    )
}

fn device_mapping_beyond_the_window_is_enxio(h: &mut dyn Harness) -> Outcome {
    let size = h.facts().device.1;
    let mut p = proc(h)?;
    let fd = dev(h, &mut *p, OFlags::RDWR)?;
    expect_err(
        map_shared(&mut *p, fd, size + P, RW, 0),
        Errno::ENXIO,
        "longer than the window",
    )?;
    expect_err(
        map_shared(&mut *p, fd, P, RW, size),
        Errno::ENXIO,
        "offset at the end",
    )?;
    let a = map_shared(&mut *p, fd, P, RW, size - P).ctx("last page")?;
    poke(&mut *p, a, 1)
}

fn device_without_frames_is_enodev(h: &mut dyn Harness) -> Outcome {
    let name = h.facts().unmappable_device;
    let mut p = proc(h)?;
    let fd = client(&mut *p)
        .open_device(&name, OFlags::RDWR)
        .ctx("open")?;
    expect_err(
        map_shared(&mut *p, fd, P, RW, 0),
        Errno::ENODEV,
        "map of an unmappable device",
    )
}

fn device_unknown_name_is_enoent(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).open_device("no-such-device", OFlags::RDWR),
        Errno::ENOENT,
        "unknown device",
    )
}

fn device_without_the_right_is_eacces(h: &mut dyn Harness) -> Outcome {
    let name = h.facts().device.0;
    let mut p = proc_with(h, spec(|s| s.devices = 0))?;
    expect_err(
        client(&mut *p).open_device(&name, OFlags::RDWR),
        Errno::EACCES,
        "device without the right",
    )
}

fn device_read_only_fd_cannot_map_writable(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = dev(h, &mut *p, OFlags::RDONLY)?;
    expect_err(
        map_shared(&mut *p, fd, P, RW, 0),
        Errno::EACCES,
        "rw map of an O_RDONLY device",
    )?;
    let a = map_shared(&mut *p, fd, P, Prot::READ, 0).ctx("read-only map")?;
    peek(&mut *p, a)?;
    expect_signal(
        p.write(a, 1),
        Signal::Segv,
        "write to a read-only device mapping",
    )
}

fn device_mappings_share_the_same_frames(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut q = proc(h)?;
    let fp = dev(h, &mut *p, OFlags::RDWR)?;
    let fq = dev(h, &mut *q, OFlags::RDWR)?;
    let a = map_shared(&mut *p, fp, 2 * P, RW, 0).ctx("map p")?;
    let b = map_shared(&mut *q, fq, P, RW, P).ctx("map q at offset")?;
    poke(&mut *p, a + P + 8, 0xd1)?;
    ensure_eq!(peek(&mut *q, b + 8)?, 0xd1);
    Ok(())
}

fn device_map_wc_on_ram_is_enotsup(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, PA | MapFlags::WC, None, 0),
        Errno::ENOTSUP,
        "MAP_WC of anonymous memory",
    )?;
    let (name, fd) = shm(h, &mut *p, "wc-shm", P)?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, MapFlags::SHARED | MapFlags::WC, Some(fd), 0),
        Errno::ENOTSUP,
        "MAP_WC of a shm object",
    )?;
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn device_open_with_extra_flags_is_einval(h: &mut dyn Harness) -> Outcome {
    let name = h.facts().device.0;
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).open_device(&name, OFlags::RDWR | OFlags::CREAT),
        Errno::EINVAL,
        "O_CREAT on a device",
    )?;
    expect_err(
        client(&mut *p).open_device(&name, OFlags::WRONLY),
        Errno::EINVAL,
        "O_WRONLY on a device",
    )
}

fn device_frames_are_not_zeroed_between_mappings(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = dev(h, &mut *p, OFlags::RDWR)?;
    let a = map_shared(&mut *p, fd, P, RW, 2 * P).ctx("map")?;
    poke(&mut *p, a + 1, 0xe7)?;
    client(&mut *p).munmap(a, P).ctx("munmap")?;
    let b = map_shared(&mut *p, fd, P, Prot::READ, 2 * P).ctx("map again")?;
    ensure_eq!(peek(&mut *p, b + 1)?, 0xe7);
    Ok(())
}
