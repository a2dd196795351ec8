//! The documents hold together: every relative link in the repository's Markdown
//! names a file that exists (and a heading that exists, for `#anchor` links), and the
//! README stays a newcomer's page (issue #41: at most about 1 500 words).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The Markdown files of the repository (not dependencies or build output).
fn markdown(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if !name.starts_with('.')
                && !["target", "node_modules", "vendor"].contains(&name.as_str())
            {
                markdown(&p, out);
            }
        } else if name.ends_with(".md") {
            out.push(p);
        }
    }
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// `](target)` links outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop code spans.
        let mut plain = String::new();
        let mut in_span = false;
        for c in line.chars() {
            if c == '`' {
                in_span = !in_span;
            } else if !in_span {
                plain.push(c);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_documents_resolves() {
    let root = repo();
    let mut files = Vec::new();
    markdown(&root, &mut files);
    assert!(files.len() > 5);
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in links(&text) {
            if link.starts_with("http://")
                || link.starts_with("https://")
                || link.starts_with("mailto:")
            {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let shown = file.strip_prefix(&root).unwrap().display().to_string();
            let Ok(target) = target.canonicalize() else {
                broken.push(format!("{shown}: {link} (no such file)"));
                continue;
            };
            if !target.starts_with(&root) {
                broken.push(format!("{shown}: {link} (outside the repository)"));
                continue;
            }
            if let Some(anchor) = anchor {
                if target.extension().is_some_and(|e| e == "md") {
                    let there = std::fs::read_to_string(&target).unwrap();
                    if !anchors(&there).iter().any(|a| a == anchor) {
                        broken.push(format!("{shown}: {link} (no such heading)"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_newcomers_page_with_the_two_set_up_commands() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let words = readme.split_whitespace().count();
    assert!(words <= 1600, "README.md has {words} words");
    assert!(readme.contains("\ncargo run -q -p tribune -- demo\n"));
    assert!(readme.contains("\n./scripts/test.sh\n"));
}
