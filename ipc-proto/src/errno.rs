//! Error numbers, with the Linux x86_64 values so the C ABI passes them through unchanged.

use core::fmt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! errnos {
    ($($name:ident = $num:literal, $msg:literal;)*) => {
        /// A POSIX error number carried in a failed [`Response`](crate::Response).
        ///
        /// Encoded on the wire as its Linux x86_64 number (a varint); a number not listed
        /// here does not decode.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        #[allow(clippy::upper_case_acronyms)]
        pub enum Errno {
            $(#[doc = $msg] $name = $num,)*
        }

        impl Errno {
            /// Every errno the protocol knows, in numeric order.
            pub const ALL: &'static [Errno] = &[$(Errno::$name,)*];

            /// The errno with Linux number `raw`, if the protocol knows it.
            pub const fn from_raw(raw: u16) -> Option<Errno> {
                match raw {
                    $($num => Some(Errno::$name),)*
                    _ => None,
                }
            }

            /// The symbolic name, e.g. `"EINVAL"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Errno::$name => stringify!($name),)*
                }
            }

            /// The conventional one-line description (as `strerror` gives it).
            pub const fn description(self) -> &'static str {
                match self {
                    $(Errno::$name => $msg,)*
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "Operation not permitted";
    ENOENT = 2, "No such file or directory";
    ESRCH = 3, "No such process";
    EIO = 5, "Input/output error";
    ENXIO = 6, "No such device or address";
    EBADF = 9, "Bad file descriptor";
    EAGAIN = 11, "Resource temporarily unavailable";
    ENOMEM = 12, "Cannot allocate memory";
    EACCES = 13, "Permission denied";
    EFAULT = 14, "Bad address";
    EBUSY = 16, "Device or resource busy";
    EEXIST = 17, "File exists";
    ENODEV = 19, "No such device";
    EINVAL = 22, "Invalid argument";
    ENFILE = 23, "Too many open files in system";
    EMFILE = 24, "Too many open files";
    ETXTBSY = 26, "Text file busy";
    EFBIG = 27, "File too large";
    ENOSPC = 28, "No space left on device";
    ENAMETOOLONG = 36, "File name too long";
    ENOSYS = 38, "Function not implemented";
    EPROTO = 71, "Protocol error";
    EBADMSG = 74, "Bad message";
    EOVERFLOW = 75, "Value too large for defined data type";
    EMSGSIZE = 90, "Message too long";
    ENOTSUP = 95, "Operation not supported";
}

impl Errno {
    /// The Linux x86_64 number of this errno.
    pub const fn raw(self) -> u16 {
        self as u16
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description(), self.name())
    }
}

impl core::error::Error for Errno {}

impl Serialize for Errno {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.raw())
    }
}

impl<'de> Deserialize<'de> for Errno {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = u16::deserialize(d)?;
        Errno::from_raw(raw).ok_or_else(|| serde::de::Error::custom("unknown errno"))
    }
}

impl postcard::experimental::max_size::MaxSize for Errno {
    const POSTCARD_MAX_SIZE: usize = u16::POSTCARD_MAX_SIZE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_linux_x86_64() {
        // Spot checks against <asm-generic/errno-base.h> / <asm-generic/errno.h>.
        assert_eq!(Errno::EPERM.raw(), 1);
        assert_eq!(Errno::EBADF.raw(), 9);
        assert_eq!(Errno::ENOMEM.raw(), 12);
        assert_eq!(Errno::EINVAL.raw(), 22);
        assert_eq!(Errno::ENAMETOOLONG.raw(), 36);
        assert_eq!(Errno::EOVERFLOW.raw(), 75);
        assert_eq!(Errno::ENOTSUP.raw(), 95);
    }

    #[test]
    fn from_raw_inverts_raw_and_rejects_unknown() {
        for &e in Errno::ALL {
            assert_eq!(Errno::from_raw(e.raw()), Some(e));
        }
        assert_eq!(Errno::from_raw(0), None);
        assert_eq!(Errno::from_raw(4), None);
        assert_eq!(Errno::from_raw(u16::MAX), None);
    }

    #[test]
    fn all_is_sorted_and_unique() {
        assert!(Errno::ALL.windows(2).all(|w| w[0].raw() < w[1].raw()));
    }

    #[test]
    fn display_names_the_errno() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(Errno::EACCES.to_string(), "Permission denied (EACCES)");
    }
}
