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
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
        println!("cargo:rerun-if-changed={dir}/packed-refs");
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
