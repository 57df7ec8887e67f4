//! Bad messages: each gets an error reply, and the server keeps serving.

use super::mmap::raw_call;
use super::*;
use crate::ensure_eq;
use crate::runner::Outcome;
use ipc_proto::{Access, ClientId, Request};

cases![
    protocol_empty_message_is_ebadmsg,
    protocol_unknown_request_kind_is_enosys,
    protocol_malformed_request_kind_is_ebadmsg,
    protocol_truncated_request_is_ebadmsg,
    protocol_trailing_bytes_are_ebadmsg,
    protocol_oversized_request_is_emsgsize,
    protocol_kernel_requests_from_a_client_are_eperm,
    protocol_garbage_does_not_disturb_the_client,
    protocol_invalid_name_on_the_wire_is_einval,
];

fn protocol_empty_message_is_ebadmsg(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    ensure_eq!(raw_call(&mut *p, &[]), Err(Errno::EBADMSG));
    Ok(())
}

fn protocol_unknown_request_kind_is_enosys(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let past = Request::VARIANTS as u8;
    ensure_eq!(raw_call(&mut *p, &[past]), Err(Errno::ENOSYS));
    ensure_eq!(raw_call(&mut *p, &[0x7f, 0x01]), Err(Errno::ENOSYS));
    ensure_eq!(
        raw_call(&mut *p, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(Errno::ENOSYS)
    );
    Ok(())
}

fn protocol_malformed_request_kind_is_ebadmsg(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    // A varint past u32, and one that never ends.
    ensure_eq!(
        raw_call(&mut *p, &[0xff, 0xff, 0xff, 0xff, 0x7f]),
        Err(Errno::EBADMSG)
    );
    ensure_eq!(raw_call(&mut *p, &[0x80, 0x80, 0x80]), Err(Errno::EBADMSG));
    Ok(())
}

fn protocol_truncated_request_is_ebadmsg(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let full = [0x01, 0x00, 0x80, 0x20, 0x03, 0x22, 0x00, 0x00];
    for n in 1..full.len() {
        ensure_eq!(raw_call(&mut *p, &full[..n]), Err(Errno::EBADMSG));
    }
    ensure_eq!(regions(&mut *p)?.len(), 0);
    Ok(())
}

fn protocol_trailing_bytes_are_ebadmsg(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    ensure_eq!(
        raw_call(
            &mut *p,
            &[0x01, 0x00, 0x80, 0x20, 0x03, 0x22, 0x00, 0x00, 0x00]
        ),
        Err(Errno::EBADMSG)
    );
    ensure_eq!(regions(&mut *p)?.len(), 0);
    Ok(())
}

fn protocol_oversized_request_is_emsgsize(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let big = [0u8; ipc_proto::MAX_REQUEST_LEN + 1];
    let mut out = [0u8; ipc_proto::MAX_RESPONSE_LEN];
    // A transport may refuse to carry it (EMSGSIZE itself) or deliver it to the server,
    // which must answer EMSGSIZE.
    let r = match p.transport().call(&big, &mut out) {
        Ok(n) => ipc_proto::decode_response(&out[..n])
            .ctx("decode")?
            .map(|_| ()),
        Err(e) => Err(e),
    };
    ensure_eq!(r, Err(Errno::EMSGSIZE));
    Ok(())
}

fn protocol_kernel_requests_from_a_client_are_eperm(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut victim = proc(h)?;
    let a = anon(&mut *victim, P, RW)?;
    poke(&mut *victim, a, 0x21)?;
    for req in [
        Request::ClientExited {
            client: ClientId(0),
        },
        Request::ClientExited {
            client: ClientId(1),
        },
        Request::PageFault {
            client: ClientId(1),
            addr: a,
            access: Access::Write,
        },
        Request::ClientStarted {
            client: ClientId(4242),
            spec: ClientSpec::DEFAULT,
        },
    ] {
        ensure_eq!(client(&mut *p).call(&req), Err(Errno::EPERM));
    }
    ensure_eq!(peek(&mut *victim, a)?, 0x21);
    Ok(())
}

fn protocol_garbage_does_not_disturb_the_client(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a, 0x31)?;
    let mut x: u32 = 0x1234_5678;
    for len in 0..64usize {
        let mut buf = [0u8; 64];
        for b in buf.iter_mut().take(len) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        // Any answer is fine as long as one comes and nothing breaks.
        let _ = raw_call(&mut *p, &buf[..len]);
    }
    ensure_eq!(peek(&mut *p, a)?, 0x31);
    let b = anon(&mut *p, P, RW)?;
    poke(&mut *p, b, 1)
}

fn protocol_invalid_name_on_the_wire_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    // ShmUnlink of the component "a/b": the server validates names itself.
    let mut buf = [0u8; ipc_proto::MAX_REQUEST_LEN];
    let name = ipc_proto::ShmName::new("/abc").ctx("name")?;
    let n = ipc_proto::encode_request(&Request::ShmUnlink { name }, &mut buf).ctx("encode")?;
    ensure_eq!(&buf[n - 3..n], b"abc");
    buf[n - 2] = b'/';
    ensure_eq!(raw_call(&mut *p, &buf[..n]), Err(Errno::EINVAL));
    Ok(())
}
