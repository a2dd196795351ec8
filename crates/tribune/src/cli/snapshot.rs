//! `tribune snapshot save|restore|inspect`: Consul's commands over `/v1/snapshot`.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::{Args, Subcommand};
use tribune_model::api::paths;
use tribune_server::snapshot::{Archive, Restored};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the agent's whole state to FILE (a management token is needed; the file
    /// holds every secret and is written readable by its owner alone).
    Save(FileArgs),
    /// Replace the agent's whole state with FILE's (checked whole before anything is
    /// written).
    Restore(FileArgs),
    /// Show what FILE holds: format, index, tables and their records, checksum.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The snapshot archive (written by save, read by restore).
    pub file: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The snapshot archive to read (no agent is contacted).
    pub file: String,
}

pub fn run(cmd: SnapshotCommand, io: &mut Io<'_>) -> u8 {
    match cmd {
        SnapshotCommand::Save(a) => save(&a, io),
        SnapshotCommand::Restore(a) => restore(&a, io),
        SnapshotCommand::Inspect(a) => inspect(&a, io),
    }
}

/// Writes `bytes` to `path` through a temporary file beside it (0600), so a failed
/// save never leaves a partial archive under the name asked for.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "snapshot".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn save(a: &FileArgs, io: &mut Io<'_>) -> u8 {
    let r = match call_ok(
        &a.http,
        "GET",
        paths::SNAPSHOT,
        None,
        "Error saving snapshot",
        1,
        io,
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // Verified before it is kept: what restore would refuse is not saved.
    let archive = match Archive::parse(r.body.as_bytes(), "the agent's answer") {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(io.err, "Error verifying snapshot: {e}");
            return 1;
        }
    };
    if let Err(e) = write_private(std::path::Path::new(&a.file), r.body.as_bytes()) {
        let _ = writeln!(io.err, "Error writing snapshot file {}: {e}", a.file);
        return 1;
    }
    let _ = writeln!(
        io.out,
        "Saved and verified snapshot to index {}",
        archive.index
    );
    0
}

fn read_archive(file: &str, io: &mut Io<'_>) -> Result<(Archive, usize), u8> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(io.err, "Error reading snapshot file {file}: {e}");
            return Err(1);
        }
    };
    match Archive::parse(&bytes, file) {
        Ok(a) => Ok((a, bytes.len())),
        Err(e) => {
            let _ = writeln!(io.err, "Error verifying snapshot: {e}");
            Err(1)
        }
    }
}

fn restore(a: &FileArgs, io: &mut Io<'_>) -> u8 {
    // Checked here first (the agent checks again): a damaged file is named without
    // a round trip.
    let bytes = match read_archive(&a.file, io) {
        Ok(_) => match std::fs::read(&a.file) {
            Ok(b) => b,
            Err(e) => {
                let _ = writeln!(io.err, "Error reading snapshot file {}: {e}", a.file);
                return 1;
            }
        },
        Err(code) => return code,
    };
    let r = match call_ok(
        &a.http,
        "PUT",
        paths::SNAPSHOT,
        Some(bytes),
        "Error restoring snapshot",
        1,
        io,
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match serde_json::from_str::<Restored>(&r.body) {
        Ok(done) => {
            let _ = writeln!(
                io.out,
                "Restored snapshot of index {} ({} records written, {} deleted; the store is at index {})",
                done.snapshot_index, done.written, done.deleted, done.index
            );
        }
        Err(_) => {
            let _ = writeln!(io.out, "Restored snapshot");
        }
    }
    0
}

fn inspect(a: &InspectArgs, io: &mut Io<'_>) -> u8 {
    let (archive, size) = match read_archive(&a.file, io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let _ = writeln!(
        io.out,
        " Format        {} {}",
        archive.format, archive.version
    );
    let _ = writeln!(io.out, " Store format  {}", archive.store_format);
    let _ = writeln!(io.out, " Index         {}", archive.index);
    let _ = writeln!(io.out, " Created       {}", archive.created);
    let _ = writeln!(io.out, " Revision      {}", archive.revision);
    let _ = writeln!(io.out, " Size          {size}");
    let _ = writeln!(io.out, " Checksum      {}", archive.checksum);
    let _ = writeln!(io.out);
    let width = archive
        .tables
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("Table".len());
    let _ = writeln!(
        io.out,
        " {:<width$}  {:>7}  {:>7}",
        "Table", "Records", "Index"
    );
    let mut total = 0;
    for (name, table) in &archive.tables {
        total += table.records.len();
        let _ = writeln!(
            io.out,
            " {name:<width$}  {:>7}  {:>7}",
            table.records.len(),
            table.index
        );
    }
    let _ = writeln!(io.out, " {:<width$}  {total:>7}", "Total");
    0
}
