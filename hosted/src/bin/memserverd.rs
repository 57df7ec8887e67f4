//! `memserverd --socket PATH [--mem SIZE] [--tar IMAGE] [--socket-mode OCTAL]
//! [--max-connections-per-uid N]`: the memory server as a Linux process
//! ([`memserver_hosted::daemon`]). SIGTERM or SIGINT stops it cleanly, reporting its
//! free frames. `RUST_LOG=debug` logs every connection. Its pager is a RAM file server
//! in the same process holding the conformance suite's files (`fileserver::fixture`) and
//! the read-only files of the ustar archive IMAGE.

use memserver::Server;
use memserver_hosted::HostedStub;
use memserver_hosted::daemon::{self, DaemonConfig};
use std::io;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cfg = match DaemonConfig::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match serve(&cfg) {
        Ok(s) => println!(
            "memserverd: stopped: free_frames={} total_frames={} clients={}",
            s.free_frames, s.total_frames, s.clients
        ),
        Err(e) => {
            eprintln!("memserverd: {e}");
            std::process::exit(2);
        }
    }
}

fn serve(cfg: &DaemonConfig) -> io::Result<daemon::Stopped> {
    let mut server = Server::new(cfg.server_config(), HostedStub::new());
    let mut files = fileserver::fixture::conformance_fs();
    if let Some(tar) = &cfg.tar {
        let image = std::fs::read(tar)?;
        let n = files
            .load_tar(&image)
            .map_err(|e| io::Error::other(format!("{}: {e}", tar.display())))?;
        log::info!("{}: {n} read-only files", tar.display());
    }
    server
        .set_pager(Box::new(files.into_pager()))
        .map_err(|e| io::Error::other(format!("pager: {e}")))?;
    daemon::run(cfg, server)
}
