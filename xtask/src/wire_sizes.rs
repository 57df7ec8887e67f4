//! `cargo xtask wire-sizes [--json]`: encoded sizes of typical protocol messages.

use ipc_proto::{
    MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Request, Response, encode_request, encode_response, examples,
};

/// Entry point: a table by default, one JSON object with `--json`.
pub fn run(args: &[String]) -> Result<(), String> {
    let json = match args {
        [] => false,
        [flag] if flag == "--json" => true,
        _ => return Err("usage: cargo xtask wire-sizes [--json]".into()),
    };
    let rows = sizes();
    if json {
        let body: Vec<String> = rows.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        println!("{{{}}}", body.join(", "));
    } else {
        println!("{:<26} {:>6}", "message", "bytes");
        for (name, n) in &rows {
            println!("{name:<26} {n:>6}");
        }
    }
    Ok(())
}

fn req_len(r: &Request) -> usize {
    let mut buf = [0u8; MAX_REQUEST_LEN];
    encode_request(r, &mut buf).expect("every request fits MAX_REQUEST_LEN")
}

fn resp_len(r: &Response) -> usize {
    let mut buf = [0u8; MAX_RESPONSE_LEN];
    encode_response(r, &mut buf).expect("every response fits MAX_RESPONSE_LEN")
}

/// (name, encoded bytes) for the typical messages, then the measured largest ones and the
/// proven bounds.
fn sizes() -> Vec<(String, usize)> {
    let wanted = [
        "mmap_anon_4k",
        "munmap",
        "mprotect",
        "shm_open_16",
        "page_fault",
    ];
    let mut rows: Vec<(String, usize)> = examples::requests()
        .iter()
        .filter(|(name, _)| wanted.contains(name))
        .map(|(name, req)| (name.to_string(), req_len(req)))
        .collect();
    for (name, resp) in examples::responses() {
        if matches!(name, "mapped" | "done" | "fault_resolved") {
            rows.push((format!("reply_{name}"), resp_len(&resp)));
        }
    }
    rows.push((
        "largest_request".into(),
        req_len(&examples::largest_request()),
    ));
    rows.push((
        "largest_unnamed_request".into(),
        req_len(&examples::largest_unnamed_request()),
    ));
    rows.push((
        "largest_response".into(),
        resp_len(&examples::largest_response()),
    ));
    rows.push(("max_request".into(), MAX_REQUEST_LEN));
    rows.push(("max_response".into(), MAX_RESPONSE_LEN));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_promised_keys_and_bounds() {
        let rows = sizes();
        let get = |k: &str| rows.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert!(get("mmap_anon_4k").unwrap() <= 16);
        assert_eq!(get("max_request"), Some(MAX_REQUEST_LEN));
        assert_eq!(get("max_response"), Some(MAX_RESPONSE_LEN));
        assert!(get("largest_request").unwrap() <= MAX_REQUEST_LEN);
        assert!(get("largest_response").unwrap() <= MAX_RESPONSE_LEN);
        for key in ["munmap", "mprotect", "shm_open_16", "page_fault"] {
            assert!(get(key).is_some(), "{key} missing");
        }
    }
}
