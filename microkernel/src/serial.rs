//! The COM1 console: every line the kernel prints goes here, and QEMU's `-serial stdio`
//! turns it into `cargo xtask qemu`'s output.

use core::fmt::{self, Write};
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

/// Sets COM1 to 115200 baud, 8N1, FIFOs on.
pub fn init() {
    for (offset, value) in [
        (1, 0x00),
        (3, 0x80),
        (0, 0x01),
        (1, 0x00),
        (3, 0x03),
        (2, 0xc7),
        (4, 0x0b),
    ] {
        // SAFETY: COM1's registers; writing them configures the UART and nothing else.
        unsafe { Port::<u8>::new(COM1 + offset).write(value) };
    }
}

/// The console, as a `fmt::Write` sink.
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: COM1's line status and data registers: waiting for the transmitter
            // and sending one byte has no other effect.
            unsafe {
                let mut lsr = Port::<u8>::new(COM1 + 5);
                while lsr.read() & 0x20 == 0 {}
                Port::<u8>::new(COM1).write(b);
            }
        }
        Ok(())
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = write!($crate::serial::Serial, $($arg)*);
    }};
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::serial::Serial, $($arg)*);
    }};
}

/// Ends the QEMU run through `isa-debug-exit` (iobase 0xf4): QEMU exits with status
/// `(code << 1) | 1`.
pub fn exit_qemu(code: u32) -> ! {
    // SAFETY: the debug-exit device's port; writing it ends the virtual machine.
    unsafe { Port::<u32>::new(0xf4).write(code) };
    loop {
        x86_64::instructions::hlt();
    }
}

/// Exit code for success: QEMU reports `(0x10 << 1) | 1 = 33`.
pub const EXIT_SUCCESS: u32 = 0x10;
/// Exit code for failure: QEMU reports `(0x11 << 1) | 1 = 35`.
pub const EXIT_FAILURE: u32 = 0x11;
