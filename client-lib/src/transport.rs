//! The one thing the client needs from its environment: a way to exchange messages.

use ipc_proto::Errno;

/// Sends one encoded request to the memory server and receives its encoded response.
///
/// Implementations: an in-process call into the server core, a microkernel IPC call, a
/// hosted shared-memory channel. A transport failure (server gone, message too long) is
/// reported as an errno; the bytes themselves are never interpreted here.
pub trait Transport {
    /// Sends `request` and writes the response into `response`, returning its length.
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
        (**self).call(request, response)
    }
}
