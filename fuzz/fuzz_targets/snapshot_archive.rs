//! Snapshot archives (`PUT /v1/snapshot`, `tribune snapshot restore|inspect`): any
//! bytes are refused with a message or accepted; an accepted archive serializes back
//! to an archive that parses to itself, and the writes of a restore can be planned.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tribune_server::snapshot::{restore_ops, Archive};

fuzz_target!(|data: &[u8]| {
    let Ok(archive) = Archive::parse(data, "input") else {
        return;
    };
    let bytes = archive.to_bytes().expect("an archive serializes");
    assert_eq!(Archive::parse(&bytes, "again").expect("it parses"), archive);
    restore_ops(&tribune_store::Dump::default(), &archive).expect("values are base64");
});
