//! Golden fixtures: every input file in `tests/fixtures/<case>/` (HCL or JSON, any key
//! spelling) must decode -> normalize -> validate to the same canonical JSON,
//! byte for byte, and that JSON must equal `canonical.json`.
//!
//! Regenerate the expected files with `UPDATE_GOLDEN=1 cargo test -p tribune-model --test golden`
//! (only when every input of a case agrees), then review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use tribune_model::parse_entry;

const EXPECTED: &str = "canonical.json";

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn canonical_of(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("read input");
    let entry = parse_entry(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pretty = serde_json::to_string_pretty(&entry).expect("serialize");
    pretty.push('\n');
    pretty
}

#[test]
fn every_spelling_of_an_entry_gives_the_same_canonical_json() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut checked = 0;
    for dir in cases() {
        let mut inputs: Vec<PathBuf> = fs::read_dir(&dir)
            .expect("case dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.file_name().is_some_and(|n| n != EXPECTED))
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= 2,
            "{}: a case needs at least two spellings",
            dir.display()
        );
        let outputs: Vec<(PathBuf, String)> = inputs
            .iter()
            .map(|p| (p.clone(), canonical_of(p)))
            .collect();
        let (first_path, first) = &outputs[0];
        for (path, out) in &outputs[1..] {
            assert_eq!(
                out,
                first,
                "{} and {} differ",
                path.display(),
                first_path.display()
            );
        }
        let expected_path = dir.join(EXPECTED);
        if update {
            fs::write(&expected_path, first).expect("write golden");
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} missing: run with UPDATE_GOLDEN=1",
                expected_path.display()
            )
        });
        assert_eq!(
            first,
            &expected,
            "{} is out of date",
            expected_path.display()
        );
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} golden cases found");
}

#[test]
fn the_shipped_examples_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for name in [
        "okta-provider.hcl",
        "okta-provider.json",
        "api-intentions.hcl",
        "api-intentions.json",
        "api-defaults.hcl",
    ] {
        canonical_of(&root.join(name));
    }
    assert_eq!(
        canonical_of(&root.join("api-intentions.hcl")),
        canonical_of(&root.join("api-intentions.json"))
    );
    assert_eq!(
        canonical_of(&root.join("okta-provider.hcl")),
        canonical_of(&root.join("okta-provider.json"))
    );
}
