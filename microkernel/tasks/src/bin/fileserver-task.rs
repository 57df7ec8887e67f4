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
mod task {
    use ipc_proto::{MAX_PAGER_REQUEST_LEN, MAX_PAGER_RESPONSE_LEN};

    /// The entry: `heap` and `heap_len` name the heap the kernel mapped for the task.
    /// Every message is a pager request (the kernel's, on the memory server's behalf).
    #[unsafe(no_mangle)]
    extern "C" fn task_main(heap: u64, heap_len: u64) -> ! {
        let files = fileserver::fixture::conformance_fs;
        // SAFETY: the kernel mapped exactly this heap read-write, populated, for this
        // task alone, and enters it once.
        unsafe {
            ms_tasks::rt::serve(
                heap,
                heap_len,
                MAX_PAGER_REQUEST_LEN,
                MAX_PAGER_RESPONSE_LEN,
                files,
                |files, _sender, message, out| files.handle_message(message, out),
            )
        }
    }
}
