//! (a) The ipc-proto decoders (the memory server's protocol and the pager protocol): any
//! bytes decode or are refused, never panic; whatever decodes re-encodes within the
//! bounds and decodes back to the same value.
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
    if let Ok(req) = decode_pager_request(data) {
        let mut buf = [0u8; MAX_PAGER_REQUEST_LEN];
        let n = encode_pager_request(&req, &mut buf).expect("pager requests fit the bound");
        assert_eq!(decode_pager_request(&buf[..n]), Ok(req));
    }
    if let Ok(resp) = decode_pager_response(data) {
        let mut buf = [0u8; MAX_PAGER_RESPONSE_LEN];
        let n = encode_pager_response(&resp, &mut buf).expect("pager responses fit the bound");
        assert_eq!(decode_pager_response(&buf[..n]), Ok(resp));
    }
});
