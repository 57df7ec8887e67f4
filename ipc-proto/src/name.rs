//! Validated names: shared-memory object names, bank/device names, and file paths.

use crate::Errno;
use crate::flags::varint_len;
use crate::limits::{NAME_MAX, OBJ_NAME_MAX, PATH_MAX};
use core::fmt;
use heapless::String;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A shared-memory object name such as `/ring0` (or `ring0`: the same object).
///
/// POSIX (seed 001) leaves name syntax to the implementation; we follow Linux/glibc:
/// leading slashes are optional and dropped (`"x"`, `"/x"` and `"//x"` name one object),
/// then 1..=[`NAME_MAX`] bytes with no further `/` or NUL, and not `.` or `..`. Past
/// `NAME_MAX` is `ENAMETOOLONG` (glibc says `EINVAL` there; Linux's `open` and POSIX say
/// `ENAMETOOLONG`). On the wire only the normalised part, without slashes, travels.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ShmName(String<NAME_MAX>);

impl ShmName {
    /// Validates a name as `shm_open` receives it, with or without leading slashes
    /// (glibc strips every one of them), and normalises it to the part after them.
    ///
    /// Too long is `ENAMETOOLONG`; any other rule broken is `EINVAL`.
    pub fn new(name: &str) -> Result<ShmName, Errno> {
        Self::from_component(name.trim_start_matches('/'))
    }

    /// Validates the part after the leading slashes (what travels on the wire: a
    /// component starting with `/` is an inner slash, `EINVAL`).
    pub fn from_component(component: &str) -> Result<ShmName, Errno> {
        if component.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if component.is_empty()
            || component == "."
            || component == ".."
            || component.bytes().any(|b| b == b'/' || b == 0)
        {
            return Err(Errno::EINVAL);
        }
        let mut s = String::new();
        // Cannot fail: the length was checked against the capacity above.
        s.push_str(component).map_err(|()| Errno::ENAMETOOLONG)?;
        Ok(ShmName(s))
    }

    /// The name without its leading `/`.
    pub fn component(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"/{}\"", self.0)
    }
}

impl fmt::Display for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

/// The name of a memory bank (seed 000's `/kfs/mem/bank*`) or device window (seed 002),
/// e.g. `dma` or `fb0`: 1..=[`OBJ_NAME_MAX`] bytes of `[a-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObjName(String<OBJ_NAME_MAX>);

impl ObjName {
    /// Validates a bank or device name; too long is `ENAMETOOLONG`, bad bytes `EINVAL`.
    pub fn new(name: &str) -> Result<ObjName, Errno> {
        if name.len() > OBJ_NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
        if name.is_empty() || !name.bytes().all(ok) {
            return Err(Errno::EINVAL);
        }
        let mut s = String::new();
        s.push_str(name).map_err(|()| Errno::ENAMETOOLONG)?;
        Ok(ObjName(s))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ObjName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

impl fmt::Display for ObjName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file's path at the pager: absolute, at most [`PATH_MAX`] bytes, `/`-separated
/// components that are not empty, `.` or `..`, and no NUL.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePath(String<PATH_MAX>);

impl FilePath {
    /// Validates a path; too long is `ENAMETOOLONG`, any other rule broken `EINVAL`.
    pub fn new(path: &str) -> Result<FilePath, Errno> {
        if path.len() > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let rest = path.strip_prefix('/').ok_or(Errno::EINVAL)?;
        let bad = |c: &str| c.is_empty() || c == "." || c == ".." || c.contains('\0');
        if rest.split('/').any(bad) {
            return Err(Errno::EINVAL);
        }
        let mut s = String::new();
        s.push_str(path).map_err(|()| Errno::ENAMETOOLONG)?;
        Ok(FilePath(s))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

/// Serde and `MaxSize` for a validated name: a postcard string (varint length + UTF-8),
/// validated again on decode.
macro_rules! wire_name {
    ($ty:ty, $cap:expr, $ctor:path) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(NameVisitor(|s: &str| $ctor(s).map_err(|_| "invalid name")))
            }
        }

        impl postcard::experimental::max_size::MaxSize for $ty {
            const POSTCARD_MAX_SIZE: usize = varint_len($cap as u64) + $cap;
        }
    };
}

wire_name!(ShmName, NAME_MAX, ShmName::from_component);
wire_name!(ObjName, OBJ_NAME_MAX, ObjName::new);
wire_name!(FilePath, PATH_MAX, FilePath::new);

/// Visits a borrowed or transient string and validates it, so no name ever lands in a
/// buffer larger than its bound.
struct NameVisitor<F>(F);

impl<'de, T, F: FnOnce(&str) -> Result<T, &'static str>> serde::de::Visitor<'de>
    for NameVisitor<F>
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a valid name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String as StdString;
    use std::string::ToString;

    #[test]
    fn shm_name_rules() {
        assert_eq!(ShmName::new("/ring").unwrap().component(), "ring");
        // glibc: leading slashes are optional, and every spelling is one object.
        assert_eq!(ShmName::new("ring"), ShmName::new("/ring"));
        assert_eq!(ShmName::new("//ring"), ShmName::new("/ring"));
        assert_eq!(ShmName::new("ring").unwrap().to_string(), "/ring");
        assert_eq!(ShmName::new("/"), Err(Errno::EINVAL));
        assert_eq!(ShmName::new("//"), Err(Errno::EINVAL));
        assert_eq!(ShmName::new(""), Err(Errno::EINVAL));
        assert_eq!(ShmName::new("/a/b"), Err(Errno::EINVAL));
        assert_eq!(ShmName::new("a/b"), Err(Errno::EINVAL));
        assert_eq!(ShmName::new("a/"), Err(Errno::EINVAL));
        assert_eq!(ShmName::from_component("/a"), Err(Errno::EINVAL));
        assert_eq!(ShmName::new("."), Err(Errno::EINVAL));
        assert_eq!(ShmName::new(".."), Err(Errno::EINVAL));
        assert_eq!(ShmName::new("/."), Err(Errno::EINVAL));
        assert_eq!(ShmName::new("/.."), Err(Errno::EINVAL));
        assert_eq!(ShmName::new("/a\0b"), Err(Errno::EINVAL));
        assert_eq!(
            ShmName::new("/..."),
            Ok(ShmName::from_component("...").unwrap())
        );
    }

    #[test]
    fn shm_name_length_boundary() {
        let max: StdString = "/"
            .chars()
            .chain(core::iter::repeat_n('x', NAME_MAX))
            .collect();
        assert!(ShmName::new(&max).is_ok());
        // Slashes in front do not count against NAME_MAX; the name after them does.
        assert!(ShmName::new(&max[1..]).is_ok());
        assert!(ShmName::new(&(StdString::from("//") + &max[1..])).is_ok());
        let over = max + "x";
        assert_eq!(ShmName::new(&over), Err(Errno::ENAMETOOLONG));
        assert_eq!(ShmName::new(&over[1..]), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn obj_name_rules() {
        assert!(ObjName::new("dma").is_ok());
        assert!(ObjName::new("fb0_wc-1").is_ok());
        assert_eq!(ObjName::new(""), Err(Errno::EINVAL));
        assert_eq!(ObjName::new("Bank"), Err(Errno::EINVAL));
        assert_eq!(ObjName::new("a/b"), Err(Errno::EINVAL));
        let long: StdString = core::iter::repeat_n('a', OBJ_NAME_MAX + 1).collect();
        assert_eq!(ObjName::new(&long), Err(Errno::ENAMETOOLONG));
    }
}
