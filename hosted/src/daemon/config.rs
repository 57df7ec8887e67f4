//! [`DaemonConfig`]: what `memserverd` is told on its command line.

use memserver::{Config, StandardLayout};
use std::path::PathBuf;

/// The clients' window: 16 TiB well away from where Linux places a program's mappings.
pub const WINDOW: (u64, u64) = (0x2000_0000_0000, 0x3000_0000_0000);
/// The window `MAP_32BIT` places into, where Linux's own `MAP_32BIT` does (1–2 GiB).
pub const LOW_WINDOW: (u64, u64) = (1 << 30, 1 << 31);
/// Frame number of the first frame (any value; frames are names).
const FRAME_BASE: u64 = 0x100;
/// Frames of the small `dma` bank.
pub const DMA_FRAMES: u64 = 64;
/// Frames of the `fb0` device window.
pub const FB_FRAMES: u64 = 256;

/// The daemon's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Where it listens.
    pub socket: PathBuf,
    /// Bytes of "physical memory" it manages (frames are accounting: the bytes live in
    /// the clients and in the objects' memfds).
    pub mem: u64,
    /// A ustar archive whose files its file server serves read-only.
    pub tar: Option<PathBuf>,
    /// The socket file's permission bits: `0o600` (the server's user only) unless the
    /// administrator opens it to others.
    pub socket_mode: u32,
    /// Most connections one uid may hold at once.
    pub max_connections_per_uid: usize,
    /// Check every invariant after every request (tests).
    pub self_check: bool,
}

/// The usage line.
pub const USAGE: &str = "usage: memserverd --socket PATH [--mem SIZE] [--tar IMAGE] \
[--socket-mode OCTAL] [--max-connections-per-uid N]";

impl DaemonConfig {
    /// Parses the command line (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<DaemonConfig, String> {
        let mut args = args.into_iter();
        let mut c = DaemonConfig {
            socket: PathBuf::new(),
            mem: 256 << 20,
            tar: None,
            socket_mode: 0o600,
            max_connections_per_uid: 256,
            self_check: std::env::var_os("MEMSERVER_SELF_CHECK").is_some(),
        };
        let mut socket = None;
        while let Some(a) = args.next() {
            let mut value = || args.next().ok_or(format!("{a} needs a value\n{USAGE}"));
            match a.as_str() {
                "--socket" => socket = Some(PathBuf::from(value()?)),
                "--tar" => c.tar = Some(PathBuf::from(value()?)),
                "--mem" => {
                    c.mem = parse_size(&value()?)
                        .filter(|&m| m >= 4 << 20)
                        .ok_or("--mem needs a size of at least 4M, e.g. 256M")?
                        & !4095;
                }
                "--socket-mode" => {
                    c.socket_mode = u32::from_str_radix(&value()?, 8)
                        .ok()
                        .filter(|m| m & !0o777 == 0)
                        .ok_or("--socket-mode needs octal permission bits, e.g. 666")?;
                }
                "--max-connections-per-uid" => {
                    c.max_connections_per_uid = value()?
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("--max-connections-per-uid needs a positive number")?;
                }
                _ => return Err(USAGE.into()),
            }
        }
        c.socket = socket.ok_or(USAGE)?;
        Ok(c)
    }

    /// The frames it manages.
    pub fn frames(&self) -> u64 {
        self.mem / 4096
    }

    /// The memory server's configuration: a `dma` bank, the `normal` bank and a 1 MiB
    /// `fb0` device window, placing mappings in [`WINDOW`].
    pub fn server_config(&self) -> Config {
        let normal = self.frames() - DMA_FRAMES - FB_FRAMES;
        let mut cfg = Config::standard(StandardLayout::contiguous(
            FRAME_BASE, DMA_FRAMES, normal, FB_FRAMES,
        ));
        cfg.mmap_min = WINDOW.0;
        cfg.mmap_max = WINDOW.1;
        cfg.low_window = Some(LOW_WINDOW);
        cfg.self_check = self.self_check;
        cfg
    }
}

/// `256M`, `6G`, `4096`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (n, mul) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>().ok()?.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<DaemonConfig, String> {
        DaemonConfig::parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn options_parse_and_bad_ones_say_why() {
        let c = parse(&["--socket", "/s", "--mem", "6G", "--socket-mode", "666"]).expect("ok");
        assert_eq!((c.mem, c.socket_mode), (6 << 30, 0o666));
        assert!(parse(&["--mem", "1M", "--socket", "/s"]).is_err());
        assert!(parse(&["--socket-mode", "7777", "--socket", "/s"]).is_err());
        assert!(parse(&["--socket"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert_eq!(parse_size("18446744073709551615G"), None);
    }
}
