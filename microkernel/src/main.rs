//! The microkernel; built for `x86_64-unknown-none` by `cargo xtask qemu`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the microkernel is built for x86_64-unknown-none: run `cargo xtask qemu`");
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
