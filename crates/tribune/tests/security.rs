//! The binary's part of the security suite (`cargo test --test security` runs every
//! crate's): attacks on the commands themselves, through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::BIN;
use std::process::Command;

/// Attack: `tribune config validate` on 3 000 nested objects aborted with signal 6
/// (stack overflow). It now fails with exit code 1 and names the limit, in HCL and
/// in JSON.
#[test]
fn config_validate_refuses_deep_input_without_aborting() {
    let dir = tempfile::tempdir().unwrap();
    let hcl = dir.path().join("deep.hcl");
    std::fs::write(
        &hcl,
        format!(
            "Kind = \"service-defaults\"\nName = \"api\"\nMeta {}x = 1{}",
            "{ a ".repeat(3_000),
            "}".repeat(3_001)
        ),
    )
    .unwrap();
    let json = dir.path().join("deep.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"Kind":"service-defaults","Name":"api","Meta":{}1{}}}"#,
            "[".repeat(3_000),
            "]".repeat(3_000)
        ),
    )
    .unwrap();
    for file in [&hcl, &json] {
        let out = Command::new(BIN)
            .args(["config", "validate"])
            .arg(file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
        assert!(
            stderr.contains("nesting deeper than 64 levels (the limit)"),
            "{stderr}"
        );
    }
}
