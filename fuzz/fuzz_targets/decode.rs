//! (a) The ipc-proto decoder: any bytes decode or are refused, never panic; whatever
//! decodes re-encodes within the bounds and decodes back to the same value.
#![no_main]

use ipc_proto::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode_request(data) {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = encode_request(&req, &mut buf).expect("decoded requests fit MAX_REQUEST_LEN");
        assert_eq!(decode_request(&buf[..n]), Ok(req));
    }
    if let Ok(resp) = decode_response(data) {
        let mut buf = [0u8; MAX_RESPONSE_LEN];
        let n = encode_response(&resp, &mut buf).expect("decoded responses fit MAX_RESPONSE_LEN");
        assert_eq!(decode_response(&buf[..n]), Ok(resp));
    }
});
