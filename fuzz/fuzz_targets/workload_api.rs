//! The Workload API's readers of what a local process sends: protobuf fields of a
//! request, and the HTTP/2 header block whose `:authority` is rewritten. Whatever the
//! bytes, nothing panics, and a rewritten block is never longer than the original
//! (the server's HPACK table must never hold more than the client's).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tribune_proxy::grpc::pb;
use tribune_proxy::workload_api::authority;

fuzz_target!(|data: &[u8]| {
    let _ = pb::fields(data);
    if let Some(out) = authority::rewrite_block(data) {
        assert!(out.len() <= data.len(), "a rewritten block grew");
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let serde_json::Value::Object(m) = &v {
            let _ = pb::structure(m, 16);
        }
        let _ = pb::value(&v, 16);
    }
});
