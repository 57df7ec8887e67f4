//! Property tests: every message round-trips, fits its bound, and decoding arbitrary,
//! truncated or padded bytes never panics and never accepts garbage.

mod strategies;

use ipc_proto::*;
use proptest::prelude::*;
use strategies::*;

fn enc_req(r: &Request) -> Vec<u8> {
    let mut buf = [0u8; MAX_REQUEST_LEN];
    let n = encode_request(r, &mut buf).expect("MAX_REQUEST_LEN always suffices");
    buf[..n].to_vec()
}

fn enc_resp(r: &Response) -> Vec<u8> {
    let mut buf = [0u8; MAX_RESPONSE_LEN];
    let n = encode_response(r, &mut buf).expect("MAX_RESPONSE_LEN always suffices");
    buf[..n].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_roundtrips(req in request()) {
        let bytes = enc_req(&req);
        prop_assert!(bytes.len() <= MAX_REQUEST_LEN);
        prop_assert_eq!(decode_request(&bytes), Ok(req));
    }

    #[test]
    fn response_roundtrips(resp in response()) {
        let bytes = enc_resp(&resp);
        prop_assert!(bytes.len() <= MAX_RESPONSE_LEN);
        prop_assert_eq!(decode_response(&bytes), Ok(resp));
    }

    #[test]
    fn unnamed_requests_fit_64_bytes(req in request()) {
        let named = matches!(
            req,
            Request::ShmOpen { .. } | Request::ShmUnlink { .. } | Request::FileOpen { .. }
        );
        let bytes = enc_req(&req);
        if named {
            // A name or path (PATH_MAX is NAME_MAX), its length and a few fields.
            prop_assert!(bytes.len() <= NAME_MAX.max(ipc_proto::pager::PATH_MAX) + 16, "{} bytes: {:?}", bytes.len(), req);
        } else {
            prop_assert!(bytes.len() <= 64, "{} bytes: {:?}", bytes.len(), req);
        }
    }

    #[test]
    fn responses_fit_64_bytes(resp in response()) {
        prop_assert!(enc_resp(&resp).len() <= 64);
    }

    #[test]
    fn every_truncation_is_refused(req in request()) {
        let bytes = enc_req(&req);
        for cut in 0..bytes.len() {
            prop_assert!(decode_request(&bytes[..cut]).is_err(), "prefix {cut} accepted");
        }
    }

    #[test]
    fn trailing_garbage_is_refused(req in request(), extra in prop::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = enc_req(&req);
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(decode_request(&bytes), Err(Errno::EBADMSG));
    }

    #[test]
    fn response_truncation_and_padding_refused(resp in response(), extra in any::<u8>()) {
        let mut bytes = enc_resp(&resp);
        for cut in 0..bytes.len() {
            prop_assert!(decode_response(&bytes[..cut]).is_err());
        }
        bytes.push(extra);
        prop_assert_eq!(decode_response(&bytes), Err(Errno::EBADMSG));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        // Whatever decodes must re-encode to exactly the same bytes (canonical encoding),
        // except that postcard accepts over-long varints, which we re-encode shorter.
        if let Ok(req) = decode_request(&bytes) {
            let again = enc_req(&req);
            prop_assert_eq!(decode_request(&again), Ok(req));
        }
        if let Ok(resp) = decode_response(&bytes) {
            let again = enc_resp(&resp);
            prop_assert_eq!(decode_response(&again), Ok(resp));
        }
    }

    #[test]
    fn mutated_messages_never_panic(req in request(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = enc_req(&req);
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let _ = decode_request(&bytes);
        let _ = decode_response(&bytes);
    }

    #[test]
    fn small_buffers_give_emsgsize_not_panic(req in request(), len in 0usize..64) {
        let full = enc_req(&req);
        let mut buf = vec![0u8; len];
        match encode_request(&req, &mut buf) {
            Ok(n) => prop_assert_eq!(&buf[..n], &full[..]),
            Err(e) => {
                prop_assert_eq!(e, Errno::EMSGSIZE);
                prop_assert!(full.len() > len);
            }
        }
    }
}

#[test]
fn unknown_flag_bits_are_einval_at_decode() {
    // Munlock is variant 6; Mprotect (3) carries a prot. Build a valid mprotect and set
    // prot to 8 (no such PROT bit).
    let ok = enc_req(&Request::Mprotect {
        addr: 0,
        len: 4096,
        prot: Prot::READ,
    });
    assert_eq!(*ok.last().unwrap(), 1);
    let mut bad = ok.clone();
    *bad.last_mut().unwrap() = 8;
    assert_eq!(decode_request(&bad), Err(Errno::EINVAL));
}

#[test]
fn unknown_variant_and_errno_are_refused() {
    assert!(decode_request(&[200]).is_err());
    assert!(decode_request(&[]).is_err());
    // Err(errno 4) — EINTR is not in the protocol.
    assert_eq!(decode_response(&[1, 4]), Err(Errno::EINVAL));
    assert_eq!(decode_response(&[1, 22]), Ok(Err(Errno::EINVAL)));
}

#[test]
fn bad_names_on_the_wire_are_refused() {
    let good = enc_req(&Request::ShmUnlink {
        name: ShmName::new("/ab").unwrap(),
    });
    assert_eq!(good, vec![10, 2, b'a', b'b']);
    assert_eq!(decode_request(&[10, 2, b'a', b'/']), Err(Errno::EINVAL));
    assert_eq!(decode_request(&[10, 0]), Err(Errno::EINVAL));
    assert_eq!(decode_request(&[10, 2, 0xff, 0xfe]), Err(Errno::EBADMSG));
    // A length prefix beyond NAME_MAX, with the bytes present: refused, never buffered.
    let mut long = vec![10, 0x80, 0x02];
    long.extend(std::iter::repeat_n(b'x', 256));
    assert_eq!(decode_request(&long), Err(Errno::EINVAL));
    // A length prefix claiming more bytes than the message holds.
    assert_eq!(decode_request(&[10, 100, b'a']), Err(Errno::EBADMSG));
}

#[test]
fn bounds_are_tight_for_the_largest_messages() {
    let req = examples::largest_request();
    let bytes = enc_req(&req);
    assert!(bytes.len() <= MAX_REQUEST_LEN);
    assert!(
        bytes.len() <= NAME_MAX + 16,
        "largest named request is {} bytes",
        bytes.len()
    );
    assert!(enc_req(&examples::largest_unnamed_request()).len() <= 64);
    assert!(
        enc_req(&examples::largest_mmap_request()).len()
            <= enc_req(&examples::largest_unnamed_request()).len()
    );
    assert!(enc_resp(&examples::largest_response()).len() <= 64);
}

#[test]
fn typical_mmap_is_at_most_16_bytes() {
    let n = enc_req(&examples::mmap_anon_4k()).len();
    assert!(n <= 16, "anonymous 4 KiB mmap encodes in {n} bytes");
}
