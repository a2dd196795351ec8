//! Fail static across restarts: the sidecar keeps what it last learned from the agent
//! (its registration, its mesh identity, its upstreams' endpoints and the policy
//! snapshot) and the remote key sets it fetched in a state file, so
//! that a sidecar restarted while every agent is down starts enforcing its last policy
//! instead of serving nothing. A state older than its bound ([`DEFAULT_MAX_AGE`],
//! `-state-max-age`) is not used: a sidecar
//! cut off for that long should not enforce what may have been revoked long ago.
//!
//! One JSON file per sidecar (`<state-dir>/<id>.json`, mode 0600: it holds the leaf's
//! private key), written whole to a temporary file and renamed over the old one, so a
//! crash mid-write leaves the previous state.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How old a saved state may be and still be enforced at start, by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Saved {
    /// Unix seconds of the last change.
    pub saved_at: i64,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<SavedRegistration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<SavedIdentity>,
    /// The agent's policy snapshot document, as served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Value>,
    #[serde(default)]
    pub snapshot_index: u64,
    /// Remote key sets by URI, as last fetched (the IdP may be down at a restart too).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub jwks: std::collections::BTreeMap<String, SavedJwks>,
    /// The mesh addresses of each upstream's healthy instances.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub endpoints: std::collections::BTreeMap<String, Vec<String>>,
    /// The mesh's trust domain (what `connect authz` believes identities in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SavedJwks {
    /// Unix seconds of the fetch.
    pub fetched_at: i64,
    /// The key set as the provider served it.
    pub keys: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SavedRegistration {
    pub service: String,
    pub mesh_addr: String,
    pub local_service: String,
    /// `(destination, local bind address)`.
    pub upstreams: Vec<(String, String)>,
    /// Local bind address -> the header its requests carry a JWT-SVID in (saved by
    /// later versions; absent: none).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub identity_headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SavedIdentity {
    pub trust_domain: String,
    pub roots: Vec<String>,
    pub cert_pem: String,
    pub key_pem: String,
    pub root_id: String,
}

/// The state file of one sidecar.
pub struct StateFile {
    path: PathBuf,
    saved: Mutex<Saved>,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The file name for a sidecar key (service ID or service name): what SPIFFE allows
/// in a name is safe in a file name; anything else is replaced.
fn file_name(key: &str) -> String {
    let safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.json", safe.trim_start_matches('.'))
}

impl StateFile {
    /// Opens (creating the directory) the state of sidecar `key` in `dir`. A missing,
    /// unreadable or too old file gives an empty state (logged), never an error: the
    /// file is a fallback, not a requirement.
    pub fn open(dir: &Path, key: &str, max_age: Duration) -> Result<StateFile, String> {
        make_private_dir(dir)?;
        let path = dir.join(file_name(key));
        let saved = match std::fs::read(&path) {
            Err(_) => Saved::default(),
            Ok(bytes) => match tribune_model::decode::parse_json(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|v| serde_json::from_value::<Saved>(v).map_err(|e| e.to_string()))
            {
                Ok(s) if now() - s.saved_at <= max_age.as_secs() as i64 => s,
                Ok(s) => {
                    tracing::warn!(path = %path.display(), age_s = now() - s.saved_at, "saved sidecar state is too old; not used");
                    Saved::default()
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "saved sidecar state unreadable; not used");
                    Saved::default()
                }
            },
        };
        Ok(StateFile {
            path,
            saved: Mutex::new(saved),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was loaded (or saved since).
    pub fn get(&self) -> Saved {
        self.saved.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The saved key set of `uri`, if any (without copying the rest of the state).
    pub fn jwks(&self, uri: &str) -> Option<SavedJwks> {
        self.saved.lock().ok()?.jwks.get(uri).cloned()
    }

    /// Changes the state and writes the file (errors are logged: enforcement goes on).
    pub fn update(&self, f: impl FnOnce(&mut Saved)) {
        let Ok(mut saved) = self.saved.lock() else {
            return;
        };
        let before = saved.clone();
        f(&mut saved);
        if *saved == before {
            return;
        }
        saved.saved_at = now();
        if let Err(e) = write_atomically(&self.path, &saved) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not save the sidecar state");
        }
    }
}

fn write_atomically(path: &Path, saved: &Saved) -> std::io::Result<()> {
    // A fresh name opened with O_EXCL: never follows a link planted at the name.
    let tmp = path.with_extension(format!(
        "json.{}.{:x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ));
    let bytes = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        let written = f.write_all(&bytes).and_then(|()| f.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The default state directory: one per user in the temp dir
/// (`tribune-proxy-state-<uid>`), the same on every start so a restarted sidecar finds
/// what it saved.
pub fn default_dir() -> PathBuf {
    let dir = match own_uid() {
        Some(uid) => format!("tribune-proxy-state-{uid}"),
        None => "tribune-proxy-state".into(),
    };
    std::env::temp_dir().join(dir)
}

#[cfg(unix)]
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(not(unix))]
fn own_uid() -> Option<u32> {
    None
}

/// Creates the state directory owner-only, and refuses one another user owns (the
/// temp dir is shared: a planted directory or link must not receive the leaf key).
fn make_private_dir(dir: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("Error creating state dir {}: {e}", dir.display());
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        let meta = std::fs::symlink_metadata(dir).map_err(fail)?;
        if !meta.is_dir() {
            return Err(format!("state dir {} is not a directory", dir.display()));
        }
        if let Some(uid) = own_uid() {
            if meta.uid() != uid {
                return Err(format!(
                    "state dir {} belongs to another user (uid {}); pass -state-dir",
                    dir.display(),
                    meta.uid()
                ));
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_reopening_and_too_old_state_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::open(dir.path(), "web/1", DEFAULT_MAX_AGE).unwrap();
        assert_eq!(f.path().file_name().unwrap(), "web_1.json");
        f.update(|s| {
            s.service = "web".into();
            s.snapshot = Some(serde_json::json!({"Service": "web"}));
            s.snapshot_index = 7;
        });
        let again = StateFile::open(dir.path(), "web/1", DEFAULT_MAX_AGE)
            .unwrap()
            .get();
        assert_eq!(again.service, "web");
        assert_eq!(again.snapshot_index, 7);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "holds a private key: owner only");
        }
        // Too old: not used.
        let mut old = again.clone();
        old.saved_at = now() - DEFAULT_MAX_AGE.as_secs() as i64 - 10;
        write_atomically(f.path(), &old).unwrap();
        assert_eq!(
            StateFile::open(dir.path(), "web/1", DEFAULT_MAX_AGE)
                .unwrap()
                .get(),
            Saved::default()
        );
        // A shorter bound drops a state the default would use.
        let mut recent = again.clone();
        recent.saved_at = now() - 120;
        write_atomically(f.path(), &recent).unwrap();
        assert_eq!(
            StateFile::open(dir.path(), "web/1", DEFAULT_MAX_AGE)
                .unwrap()
                .get()
                .service,
            "web"
        );
        assert_eq!(
            StateFile::open(dir.path(), "web/1", Duration::from_secs(60))
                .unwrap()
                .get(),
            Saved::default()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let made = dir.path().join("made");
            StateFile::open(&made, "x", DEFAULT_MAX_AGE).unwrap();
            let mode = std::fs::metadata(&made).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "the state dir is owner-only");
            // A file where the directory should be is refused, not written through.
            let file = dir.path().join("not-a-dir");
            std::fs::write(&file, b"x").unwrap();
            assert!(StateFile::open(&file, "x", DEFAULT_MAX_AGE).is_err());
        }
        // Garbage: not used, no error.
        std::fs::write(f.path(), b"{not json").unwrap();
        assert_eq!(
            StateFile::open(dir.path(), "web/1", DEFAULT_MAX_AGE)
                .unwrap()
                .get(),
            Saved::default()
        );
    }
}
