//! Links the bare-metal kernel with its linker script (higher half, PVH note) and names
//! the ring-3 tasks' images it carries; the host build needs neither.

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    // The ring-3 tasks' ELF images, built first by `cargo xtask qemu`, which names them
    // in MS_APP_ELF, MS_SERVER_ELF and MS_FILES_ELF; without them (a plain build, clippy) the kernel
    // carries empty images and says so when it boots.
    for (var, image) in [
        ("MS_APP_ELF", "MS_APP_IMAGE"),
        ("MS_SERVER_ELF", "MS_SERVER_IMAGE"),
        ("MS_FILES_ELF", "MS_FILES_IMAGE"),
    ] {
        println!("cargo:rerun-if-env-changed={var}");
        let path = std::env::var(var).unwrap_or_else(|_| {
            let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
            let path = format!("{out}/no-{var}.elf");
            std::fs::write(&path, b"").expect("OUT_DIR is writable");
            path
        });
        println!("cargo:rustc-env={image}={path}");
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
