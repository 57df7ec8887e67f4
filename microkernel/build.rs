//! Links the bare-metal kernel with its linker script (higher half, PVH note) and names
//! the conformance app's image it carries; the host build needs neither.

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    // The conformance app's ELF, built first by `cargo xtask qemu`, which names it in
    // MS_APP_ELF; without it (a plain build, clippy) the kernel carries an empty image
    // and says so when it boots.
    println!("cargo:rerun-if-env-changed=MS_APP_ELF");
    let image = match std::env::var("MS_APP_ELF") {
        Ok(path) => path,
        Err(_) => {
            let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
            let path = format!("{out}/no-app.elf");
            std::fs::write(&path, b"").expect("OUT_DIR is writable");
            path
        }
    };
    println!("cargo:rustc-env=MS_APP_IMAGE={image}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
