//! Snapshots (`GET`/`PUT /v1/snapshot`, `tribune snapshot save|restore|inspect`): the
//! whole state as one archive, the same whichever store wrote it, so an embedded
//! store's snapshot restores into etcd and back (the migration path between them).
//!
//! The archive is JSON: a header (format, store format, index, time, revision), every
//! table with its records (values in base64), and a SHA-256 checksum of the tables as
//! written. A restore checks all of it before it writes anything: a truncated or
//! altered archive is refused with nothing changed.
//!
//! A restore makes the store hold exactly the archive's records: records the archive
//! lacks are deleted, the others written. Indexes keep growing (records written by
//! the restore get new ones), so every blocking query and cache sees the change. On
//! the embedded store the restore is one transaction; on etcd it is written in
//! batches (etcd limits a transaction's size), and re-running an interrupted restore
//! finishes it.

use crate::extract::ManagementCaller;
use crate::{ApiError, ApiResult, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tribune_store::{Cas, Dump, Op};

/// What the archive's `Format` says.
pub const ARCHIVE_FORMAT: &str = "tribune-snapshot";
/// The archive layout this build writes and reads.
pub const ARCHIVE_VERSION: u64 = 1;
/// The largest archive `PUT /v1/snapshot` takes.
pub const MAX_ARCHIVE_BYTES: usize = 512 << 20;

/// A snapshot archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Archive {
    pub format: String,
    pub version: u64,
    /// The store format of the agent that took it (`tribune version`).
    pub store_format: u64,
    /// The store's index when it was taken.
    pub index: u64,
    /// When it was taken (RFC 3339).
    pub created: String,
    /// The build that took it.
    pub revision: String,
    /// `sha256:<hex>` of [`Archive::tables`] serialized as JSON.
    pub checksum: String,
    pub tables: BTreeMap<String, ArchivedTable>,
}

/// One table of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ArchivedTable {
    pub index: u64,
    pub records: Vec<ArchivedRecord>,
}

/// One record of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ArchivedRecord {
    pub key: String,
    /// The value's bytes, base64 (standard alphabet, padded).
    pub value: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Why an archive cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveError(pub String);

impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArchiveError {}

fn checksum(tables: &BTreeMap<String, ArchivedTable>) -> Result<String, ArchiveError> {
    let bytes =
        serde_json::to_vec(tables).map_err(|e| ArchiveError(format!("snapshot tables: {e}")))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

impl Archive {
    /// The archive of `dump`.
    pub fn of(dump: &Dump, revision: &str) -> Result<Archive, ArchiveError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let tables: BTreeMap<String, ArchivedTable> = dump
            .tables
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    ArchivedTable {
                        index: t.index,
                        records: t
                            .records
                            .iter()
                            .map(|r| ArchivedRecord {
                                key: r.key.clone(),
                                value: b64.encode(&r.value),
                                create_index: r.create_index,
                                modify_index: r.modify_index,
                            })
                            .collect(),
                    },
                )
            })
            .collect();
        let created = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| ArchiveError(format!("snapshot time: {e}")))?;
        Ok(Archive {
            format: ARCHIVE_FORMAT.into(),
            version: ARCHIVE_VERSION,
            store_format: tribune_store::FORMAT_VERSION,
            index: dump.index,
            created,
            revision: revision.into(),
            checksum: checksum(&tables)?,
            tables,
        })
    }

    /// Reads and checks an archive: its format and versions, its checksum, every
    /// value's encoding. `source` names it in errors (a file, or "the request body").
    pub fn parse(bytes: &[u8], source: &str) -> Result<Archive, ArchiveError> {
        let not_one = |e: &dyn std::fmt::Display| {
            ArchiveError(format!(
                "{source} is not a Tribune snapshot (truncated or damaged?): {e}"
            ))
        };
        let value = tribune_model::decode::parse_json(bytes).map_err(|e| not_one(&e))?;
        let archive: Archive = serde_json::from_value(value).map_err(|e| not_one(&e))?;
        if archive.format != ARCHIVE_FORMAT {
            return Err(ArchiveError(format!(
                "{source}: Format is {:?}, not {ARCHIVE_FORMAT:?}",
                archive.format
            )));
        }
        if archive.version > ARCHIVE_VERSION {
            return Err(ArchiveError(format!(
                "{source}: snapshot version {} is newer than this build reads ({ARCHIVE_VERSION}); restore it with a newer Tribune",
                archive.version
            )));
        }
        if archive.store_format > tribune_store::FORMAT_VERSION {
            return Err(ArchiveError(format!(
                "{source}: taken from a store of format {}, newer than this build reads ({}); restore it with a newer Tribune",
                archive.store_format,
                tribune_store::FORMAT_VERSION
            )));
        }
        let sum = checksum(&archive.tables)?;
        if sum != archive.checksum {
            return Err(ArchiveError(format!(
                "{source}: checksum mismatch (the archive says {}, its tables hash to {sum}): the archive was altered or damaged",
                archive.checksum
            )));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        for (name, t) in &archive.tables {
            for r in &t.records {
                b64.decode(&r.value).map_err(|e| {
                    ArchiveError(format!(
                        "{source}: table {name:?} record {:?}: Value is not base64: {e}",
                        r.key
                    ))
                })?;
            }
        }
        Ok(archive)
    }

    /// The archive as the bytes `GET /v1/snapshot` answers with.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ArchiveError> {
        serde_json::to_vec(self).map_err(|e| ArchiveError(format!("snapshot: {e}")))
    }

    /// `(table, records)` in name order (for `snapshot inspect`).
    pub fn counts(&self) -> Vec<(&str, usize)> {
        self.tables
            .iter()
            .map(|(n, t)| (n.as_str(), t.records.len()))
            .collect()
    }
}

/// The writes that make a store holding `current` hold exactly `archive`'s records:
/// deletes of what the archive lacks, puts of the rest (a put of the same bytes
/// changes nothing).
pub fn restore_ops(current: &Dump, archive: &Archive) -> Result<Vec<Op>, ArchiveError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ops = Vec::new();
    for (name, table) in &current.tables {
        let keep: std::collections::HashSet<&str> = archive
            .tables
            .get(name)
            .map(|t| t.records.iter().map(|r| r.key.as_str()).collect())
            .unwrap_or_default();
        for r in &table.records {
            if !keep.contains(r.key.as_str()) {
                ops.push(Op::delete(name, &r.key, Cas::Any));
            }
        }
    }
    for (name, table) in &archive.tables {
        for r in &table.records {
            let value = b64
                .decode(&r.value)
                .map_err(|e| ArchiveError(format!("table {name:?} record {:?}: {e}", r.key)))?;
            ops.push(Op::put(name, &r.key, value, Cas::Any));
        }
    }
    Ok(ops)
}

/// `GET /v1/snapshot`: the archive of the whole state, read at one point in time.
/// Needs a management token (it holds every secret).
pub(crate) async fn save(State(state): State<Shared>, _: ManagementCaller) -> ApiResult<Response> {
    let dump = state.store.dump().await?;
    let archive = Archive::of(&dump, crate::REVISION).map_err(|e| crate::internal_error(e.0))?;
    let bytes = archive.to_bytes().map_err(|e| crate::internal_error(e.0))?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_string(),
            ),
            (
                axum::http::HeaderName::from_static("x-consul-index"),
                archive.index.to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Restored {
    /// The archive's index.
    pub snapshot_index: u64,
    /// The store's index after the restore.
    pub index: u64,
    /// Records written and deleted.
    pub written: usize,
    pub deleted: usize,
}

/// `PUT /v1/snapshot`: replaces the whole state with the archive in the body, after
/// checking all of it. Needs a management token.
pub(crate) async fn restore(
    State(state): State<Shared>,
    _: ManagementCaller,
    body: Bytes,
) -> ApiResult<axum::Json<Restored>> {
    let archive =
        Archive::parse(&body, "the request body").map_err(|e| ApiError::bad_request(e.0))?;
    // One restore at a time, and no guarded write of this agent in between.
    let _guard = state.write_lock.lock().await;
    let current = state.store.dump().await?;
    let ops = restore_ops(&current, &archive).map_err(|e| ApiError::bad_request(e.0))?;
    let deleted = ops
        .iter()
        .filter(|o| matches!(o, Op::Delete { .. }))
        .count();
    let mut index = current.index;
    for batch in ops.chunks(state.store.max_ops().max(1)) {
        let applied = crate::state::write::apply(&state, batch).await?;
        if !applied.ok {
            return Err(crate::internal_error(
                "the store refused a restore batch; run the restore again".into(),
            ));
        }
        index = index.max(applied.index);
    }
    tracing::info!(
        target: "tribune",
        snapshot_index = archive.index,
        index,
        deleted,
        "snapshot restored"
    );
    Ok(axum::Json(Restored {
        snapshot_index: archive.index,
        index,
        written: ops.len() - deleted,
        deleted,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_store::{Record, TableDump};

    fn dump() -> Dump {
        let mut d = Dump {
            index: 9,
            tables: BTreeMap::new(),
        };
        d.tables.insert(
            "acl-tokens".into(),
            TableDump {
                index: 7,
                records: vec![Record {
                    key: "t1".into(),
                    value: b"{\"SecretID\":\"s\"}".to_vec(),
                    create_index: 3,
                    modify_index: 7,
                }],
            },
        );
        d
    }

    #[test]
    fn an_archive_round_trips_and_any_change_is_refused() {
        let a = Archive::of(&dump(), "dev").unwrap();
        let bytes = a.to_bytes().unwrap();
        assert_eq!(Archive::parse(&bytes, "f").unwrap(), a);
        // Truncated.
        let e = Archive::parse(&bytes[..bytes.len() / 2], "f").unwrap_err();
        assert!(e.0.starts_with("f is not a Tribune snapshot"), "{e}");
        // One value altered (still valid base64 and JSON).
        let text = String::from_utf8(bytes.clone()).unwrap();
        let altered = text.replacen("\"Value\":\"ey", "\"Value\":\"fy", 1);
        assert_ne!(altered, text);
        let e = Archive::parse(altered.as_bytes(), "f").unwrap_err();
        assert!(e.0.contains("checksum mismatch"), "{e}");
        // A newer layout.
        let newer = text.replacen("\"Version\":1", "\"Version\":2", 1);
        let e = Archive::parse(newer.as_bytes(), "f").unwrap_err();
        assert!(e.0.contains("snapshot version 2 is newer"), "{e}");
    }

    #[test]
    fn a_restore_deletes_what_the_archive_lacks_and_writes_the_rest() {
        let archive = Archive::of(&dump(), "dev").unwrap();
        let mut current = dump();
        current
            .tables
            .get_mut("acl-tokens")
            .unwrap()
            .records
            .push(Record {
                key: "t2".into(),
                value: b"x".to_vec(),
                create_index: 8,
                modify_index: 8,
            });
        current.tables.insert(
            "services".into(),
            TableDump {
                index: 9,
                records: vec![Record {
                    key: "web".into(),
                    value: b"{}".to_vec(),
                    create_index: 9,
                    modify_index: 9,
                }],
            },
        );
        let ops = restore_ops(&current, &archive).unwrap();
        assert_eq!(
            ops,
            [
                Op::delete("acl-tokens", "t2", Cas::Any),
                Op::delete("services", "web", Cas::Any),
                Op::put(
                    "acl-tokens",
                    "t1",
                    b"{\"SecretID\":\"s\"}".to_vec(),
                    Cas::Any
                ),
            ]
        );
    }
}
