//! Who may do what: every permission rule of the call family in one place, so the calls
//! ask here instead of each deciding for itself.
//!
//! Identity is the client's uid/gid as the kernel (or the hosted runtime, from the
//! socket's peer credentials) reported it at `ClientStarted`, never anything a message
//! says.

use ipc_proto::{Access, ClientSpec, Errno, Mode, OFlags, Prot};

/// Access an open or a mapping needs from an object's mode bits: read, or read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// `r`.
    Read,
    /// `rw`.
    ReadWrite,
}

impl Want {
    /// The mode bits (`r=4, w=2`) this access needs in a class.
    fn bits(self) -> u32 {
        match self {
            Want::Read => 4,
            Want::ReadWrite => 4 | 2,
        }
    }

    /// What opening with `oflag` needs: writing for `O_RDWR` or `O_TRUNC`.
    pub fn for_open(write: bool, oflag: OFlags) -> Want {
        if write || oflag.contains(OFlags::TRUNC) {
            Want::ReadWrite
        } else {
            Want::Read
        }
    }
}

/// An object's owner and mode bits, as `permits` reads them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner {
    /// Permission bits.
    pub mode: Mode,
    /// Owning user.
    pub uid: u32,
    /// Owning group.
    pub gid: u32,
}

/// Whether `who` may access an object of `owner` as `want`, by the owner/group/other mode
/// bits (the first class that matches decides, as POSIX says); uid 0 always may.
pub(crate) fn permits(owner: Owner, who: &ClientSpec, want: Want) -> bool {
    if who.uid == 0 {
        return true;
    }
    let bits = owner.mode.bits();
    let class = if who.uid == owner.uid {
        (bits >> 6) & 7
    } else if who.gid == owner.gid {
        (bits >> 3) & 7
    } else {
        bits & 7
    };
    class & want.bits() == want.bits()
}

/// `O_RDONLY` (false) or `O_RDWR` (true); `O_WRONLY` and the invalid `3` are `EINVAL`
/// (POSIX leaves shm_open with them unspecified).
pub(crate) fn access_mode(oflag: OFlags) -> Result<bool, Errno> {
    match oflag & OFlags::ACCMODE {
        m if m == OFlags::RDONLY => Ok(false),
        m if m == OFlags::RDWR => Ok(true),
        _ => Err(Errno::EINVAL),
    }
}

/// `shm_unlink`: `/dev/shm` is a sticky directory, so only the owner (or root) may.
pub(crate) fn may_unlink(who: &ClientSpec, owner_uid: u32) -> bool {
    who.uid == 0 || who.uid == owner_uid
}

/// The W^X policy (seed 002's "MAC disallowed this"): `EACCES` for a client under it
/// asking for a page both writable and executable.
pub(crate) fn check_wx(who: &ClientSpec, prot: Prot) -> Result<(), Errno> {
    if who.deny_wx && prot.contains(Prot::WRITE | Prot::EXEC) {
        return Err(Errno::EACCES);
    }
    Ok(())
}

/// Whether `who` was given bank number `bank` (a bit of its spec).
pub(crate) fn may_use_bank(who: &ClientSpec, bank: u8) -> bool {
    bank < 32 && who.banks & (1u32 << bank) != 0
}

/// Whether `who` was given device number `dev` (a bit of its spec).
pub(crate) fn may_use_device(who: &ClientSpec, dev: usize) -> bool {
    dev < 32 && who.devices & (1u32 << dev) != 0
}

/// Whether `who` is exempt from the locked-memory limit (root, as `CAP_IPC_LOCK`).
pub(crate) fn unlimited_locking(who: &ClientSpec) -> bool {
    who.uid == 0
}

/// Whether `who` may lock memory at all: Linux's `can_do_mlock` (a non-zero
/// `RLIMIT_MEMLOCK`, or `CAP_IPC_LOCK`); `mlock`, `mlockall` and `MAP_LOCKED` are
/// `EPERM` otherwise.
pub(crate) fn may_lock(who: &ClientSpec) -> bool {
    unlimited_locking(who) || who.limits.max_locked != 0
}

/// The most a mapping of an object fd may ever allow: a shared mapping of a read-only
/// fd never becomes writable (POSIX: `EACCES` for `mmap` and for a later `mprotect`).
pub(crate) fn object_max_prot(shared: bool, fd_writable: bool) -> Prot {
    if shared && !fd_writable {
        Prot::READ | Prot::EXEC
    } else {
        Prot::all()
    }
}

/// Whether `prot` allows `access` the way x86 does: any accessible page is readable.
pub(crate) fn prot_allows(prot: Prot, access: Access) -> bool {
    match access {
        Access::Read => !prot.is_empty(),
        Access::Write => prot.contains(Prot::WRITE),
        Access::Exec => prot.contains(Prot::EXEC),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gid: u32) -> ClientSpec {
        ClientSpec {
            uid,
            gid,
            ..ClientSpec::DEFAULT
        }
    }

    fn owner(mode: u32) -> Owner {
        Owner {
            mode: Mode::from_raw(mode).unwrap(),
            uid: 10,
            gid: 20,
        }
    }

    #[test]
    fn mode_bits_by_owner_group_other() {
        let o = owner(0o640);
        assert!(permits(o, &who(10, 99), Want::ReadWrite));
        assert!(permits(o, &who(11, 20), Want::Read));
        assert!(!permits(o, &who(11, 20), Want::ReadWrite));
        assert!(!permits(o, &who(11, 21), Want::Read));
        assert!(permits(o, &who(0, 0), Want::ReadWrite));
    }

    #[test]
    fn owner_class_wins_even_when_group_would_allow() {
        let o = owner(0o070);
        assert!(!permits(o, &who(10, 20), Want::Read));
        assert!(permits(o, &who(11, 20), Want::Read));
    }

    #[test]
    fn truncating_needs_write_permission() {
        assert_eq!(Want::for_open(false, OFlags::RDONLY), Want::Read);
        assert_eq!(
            Want::for_open(false, OFlags::RDONLY | OFlags::TRUNC),
            Want::ReadWrite
        );
        assert_eq!(Want::for_open(true, OFlags::RDWR), Want::ReadWrite);
    }

    #[test]
    fn only_read_and_read_write_open_modes() {
        assert_eq!(access_mode(OFlags::RDONLY), Ok(false));
        assert_eq!(access_mode(OFlags::RDWR), Ok(true));
        assert_eq!(access_mode(OFlags::WRONLY), Err(Errno::EINVAL));
    }

    #[test]
    fn read_only_fds_cap_shared_mappings_only() {
        assert!(!object_max_prot(true, false).contains(Prot::WRITE));
        assert!(object_max_prot(false, false).contains(Prot::WRITE));
        assert!(object_max_prot(true, true).contains(Prot::WRITE));
    }
}
