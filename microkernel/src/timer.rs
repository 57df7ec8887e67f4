//! The timer that preempts ring-3 apps: channel 0 of the PIT at [`HZ`], through the
//! legacy PIC remapped to [`TIMER`](crate::trap::TIMER) with every other line masked.
//! The kernel itself runs with interrupts off; only a scheduled app runs with them on,
//! so a tick lands in ring 3 or waits until an app runs again.

use x86_64::instructions::port::Port;

/// Ticks per second.
pub const HZ: u32 = 100;
/// The PIT's input clock.
const PIT_HZ: u32 = 1_193_182;

/// The master PIC's command and data ports, and the slave's.
const PIC1: u16 = 0x20;
const PIC2: u16 = 0xa0;
/// ICW1: initialise, ICW4 follows; ICW4: 8086 mode; OCW2: end of interrupt.
const ICW1_INIT: u8 = 0x11;
const ICW4_8086: u8 = 0x01;
const EOI: u8 = 0x20;

/// Remaps the PICs past the exception vectors, masks every line but the timer's if
/// `ticking`, and programs the PIT (mode 2, rate generator) at [`HZ`].
pub fn init(ticking: bool) {
    let base = crate::trap::TIMER;
    // SAFETY: the 8259 initialisation sequence and the PIT's mode and divisor, on their
    // fixed ports; the kernel runs with interrupts off, so no tick arrives half-way.
    unsafe {
        let (mut c1, mut d1) = (Port::<u8>::new(PIC1), Port::<u8>::new(PIC1 + 1));
        let (mut c2, mut d2) = (Port::<u8>::new(PIC2), Port::<u8>::new(PIC2 + 1));
        c1.write(ICW1_INIT);
        c2.write(ICW1_INIT);
        d1.write(base);
        d2.write(base + 8);
        d1.write(1 << 2); // the slave on line 2
        d2.write(2); // its cascade identity
        d1.write(ICW4_8086);
        d2.write(ICW4_8086);
        d1.write(if ticking { 0xfe } else { 0xff });
        d2.write(0xff);
        let divisor = (PIT_HZ / HZ) as u16;
        Port::<u8>::new(0x43).write(0x34); // channel 0, low then high byte, mode 2
        let mut ch0 = Port::<u8>::new(0x40);
        ch0.write(divisor as u8);
        ch0.write((divisor >> 8) as u8);
    }
}

/// Ends the timer interrupt at the PIC, so the next tick can come.
pub fn acknowledge() {
    // SAFETY: a non-specific end of interrupt to the master PIC, which raised it.
    unsafe { Port::<u8>::new(PIC1).write(EOI) };
}
