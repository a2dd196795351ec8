//! The build's revision for `/v1/agent/self` and `tribune version`: `TRIBUNE_REVISION`
//! when the build sets it (packaging), else in release builds the git commit the tree
//! is at (debug builds say `dev`, so a commit does not rebuild them).

fn main() {
    println!("cargo:rerun-if-env-changed=TRIBUNE_REVISION");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let revision = match std::env::var("TRIBUNE_REVISION") {
        Ok(r) if !r.is_empty() => r,
        _ if release => git_revision().unwrap_or_else(|| "unknown".into()),
        _ => "dev".into(),
    };
    println!("cargo:rustc-env=TRIBUNE_REVISION={revision}");
}

/// `git rev-parse --short=12 HEAD`, and what to watch so a new commit is seen.
fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    if let Some(dir) = std::process::Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        .ok()
        .filter(|o| o.status.success())
    {
        let dir = String::from_utf8_lossy(&dir.stdout).trim().to_string();
        // Only paths that exist: cargo reruns a build script on every build while a
        // path it watches is missing (a fresh clone has no packed-refs), rebuilding
        // the server and the binary each time.
        for path in ["HEAD", "refs/heads", "packed-refs"] {
            let path = format!("{dir}/{path}");
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
