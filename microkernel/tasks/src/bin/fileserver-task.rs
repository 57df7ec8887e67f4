//! The file server as a ring-3 task: `fileserver`'s RAM file system (the conformance
//! suite's files, the read-only ones from a ustar boot image) answering the pager
//! protocol on its IPC loop. Its only caller is the memory server task, through the
//! kernel (`pager_call`); it reaches nothing else. The kernel starts it with its heap
//! mapped, as it does the memory server.
//!
//! Built for the host (it is a workspace member) it is a stub that says so.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the file server task runs under the microkernel: run `cargo xtask qemu`");
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod task {
    use alloc::vec;
    use ipc_proto::{MAX_PAGER_REQUEST_LEN, MAX_PAGER_RESPONSE_LEN};
    use ms_tasks::sys;

    /// The entry: `heap` and `heap_len` name the heap the kernel mapped for the task.
    #[unsafe(no_mangle)]
    extern "C" fn task_main(heap: u64, heap_len: u64) -> ! {
        // SAFETY: the kernel mapped exactly this range read-write, populated, for this
        // task alone, and starts the task once.
        unsafe { ms_tasks::rt::init_heap(heap, heap_len) };
        let mut files = fileserver::fixture::conformance_fs();
        // Each message is the sender (8 bytes, the kernel's 0) and a pager request.
        let mut buf = vec![0u8; 8 + MAX_PAGER_REQUEST_LEN];
        let mut out = vec![0u8; MAX_PAGER_RESPONSE_LEN];
        let mut reply = 0;
        loop {
            let n = sys::receive(&out[..reply], &mut buf).min(buf.len());
            reply = match buf.get(8..n) {
                Some(message) => files.handle_message(message, &mut out),
                None => 0,
            };
        }
    }
}
