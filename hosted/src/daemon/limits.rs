//! A client's resource limits are its process's own: `RLIMIT_MEMLOCK` and `RLIMIT_AS`,
//! read by the daemon from `/proc/<pid>/limits` (the kernel's word, which the client
//! cannot forge) when it connects and again whenever it says it changed them
//! ([`KIND_LIMITS`](crate::wire::KIND_LIMITS)).

use ipc_proto::Limits;

/// The limits the server enforces for process `pid`: its soft `RLIMIT_MEMLOCK` and
/// `RLIMIT_AS` over [`Limits::DEFAULT`]; `None` when the process cannot be read (gone).
pub fn of_process(pid: i32) -> Option<Limits> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    Some(parse(&text))
}

/// Parses the text of `/proc/<pid>/limits` (soft limits, `unlimited` as no limit); a
/// line that is missing or unreadable leaves the default.
pub fn parse(text: &str) -> Limits {
    let mut limits = Limits::DEFAULT;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Max locked memory") {
            limits.max_locked = soft(rest).unwrap_or(limits.max_locked);
        } else if let Some(rest) = line.strip_prefix("Max address space") {
            limits.max_bytes = soft(rest).unwrap_or(limits.max_bytes);
        }
    }
    limits
}

/// The first column after the name: a number of bytes, or `unlimited`.
fn soft(rest: &str) -> Option<u64> {
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max stack size            8388608              unlimited            bytes     
Max processes             unlimited            unlimited            processes 
Max open files            1024                 1048576              files     
Max locked memory         65536                8388608              bytes     
Max address space         unlimited            unlimited            bytes     
";

    #[test]
    fn soft_limits_are_read_and_unlimited_is_no_limit() {
        let l = parse(SAMPLE);
        assert_eq!(l.max_locked, 65536);
        assert_eq!(l.max_bytes, u64::MAX);
        assert_eq!(l.max_regions, Limits::DEFAULT.max_regions);
        let zero = SAMPLE.replace("65536                8388608", "0 0");
        assert_eq!(parse(&zero).max_locked, 0);
        assert_eq!(parse("garbage").max_locked, Limits::DEFAULT.max_locked);
    }

    #[test]
    fn this_process_is_readable() {
        assert!(of_process(std::process::id() as i32).is_some());
    }
}
