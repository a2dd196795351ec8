//! `tribune intention create|get|list|delete|match`: Consul's commands, flags, output
//! and exit codes. As in Consul since 1.9 they act on the `service-intentions` config
//! entries: an intention is one source of its destination's entry. Writes are
//! read-modify-write of the whole entry with CAS on its `ModifyIndex`, so a concurrent
//! change is never lost (a lost race is retried).

use super::http::{call, call_ok, unexpected, HttpArgs};
use super::Io;
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tribune_client::encode;
use tribune_model::api::paths;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// SRC DST, or with -file the files to read.
    pub args: Vec<String>,
    /// Create an intention that allows when matched (the default).
    #[arg(long)]
    pub allow: bool,
    /// Create an intention that denies when matched.
    #[arg(long)]
    pub deny: bool,
    /// Read intention data (Consul's JSON intention objects) from one or more files.
    #[arg(long)]
    pub file: bool,
    /// Replace matching intentions (their description and permissions are not kept).
    #[arg(long)]
    pub replace: bool,
    /// Metadata to set, formatted as key=value; may be repeated. Intentions share
    /// their destination entry's `Meta`.
    #[arg(long, value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct PairArgs {
    /// SRC DST.
    pub args: Vec<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct MatchArgs {
    /// SRC or DST.
    pub args: Vec<String>,
    /// Match intentions with the given source.
    #[arg(long)]
    pub source: bool,
    /// Match intentions with the given destination (the default).
    #[arg(long)]
    pub destination: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// One intention as Consul's API and `-file` spell it (the fields Tribune keeps).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Intention {
    #[serde(default, rename = "ID")]
    id: String,
    #[serde(default)]
    source_name: String,
    #[serde(default)]
    destination_name: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    meta: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    permissions: Option<Value>,
    #[serde(default)]
    precedence: u64,
}

impl Intention {
    /// Consul's `web => db (allow)`.
    fn label(&self) -> String {
        format!(
            "{} => {} ({})",
            self.source_name, self.destination_name, self.action
        )
    }
}

/// Aligned columns as Consul prints them (columnize: every column but the last
/// padded to its widest cell, joined by two spaces).
pub(crate) fn columnize(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A name as Consul's CLI takes it; Tribune has only the default namespace.
fn target(input: &str, what: &str) -> Result<String, String> {
    match input.split('/').collect::<Vec<_>>().as_slice() {
        [name] => Ok(name.to_string()),
        ["default", name] | ["default", "default", name] => Ok(name.to_string()),
        [_, _] | [_, _, _] => Err(format!(
            "Invalid intention {what}: only the default partition and namespace exist in Tribune"
        )),
        _ => Err(format!(
            "Invalid intention {what}: input can contain at most two '/'"
        )),
    }
}

/// `-meta k=v` flags (`k` alone: an empty value, as Consul's flag takes it).
fn parse_meta(list: &[String]) -> std::collections::BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn read_files(paths: &[String]) -> Result<Vec<Intention>, String> {
    let mut out = Vec::new();
    for path in paths {
        let text = if path == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| format!("Failed to read stdin: {e}"))?;
            s
        } else {
            super::read_file(path)?
        };
        let v = tribune_model::decode::parse_json(text.as_bytes())
            .map_err(|e| format!("{path}: {e}"))?;
        let ixn: Intention =
            tribune_model::decode::from_value(&v, "").map_err(|e| format!("{path}: {e}"))?;
        if ixn.source_name.is_empty() || ixn.destination_name.is_empty() {
            return Err(format!(
                "{path}: SourceName and DestinationName are required"
            ));
        }
        out.push(ixn);
    }
    Ok(out)
}

/// The destination's entry (canonical JSON) and its ModifyIndex (0: none yet).
fn load_entry(http: &HttpArgs, dst: &str) -> Result<(Value, u64), String> {
    let r = call(
        http,
        "GET",
        &paths::fill(paths::CONFIG_ENTRY, &["service-intentions", &encode(dst)]),
        None,
    )
    .map_err(|e| format!("Error connecting to Tribune agent: {e}"))?;
    match r.status {
        404 => Ok((
            json!({"Kind": "service-intentions", "Name": dst, "Sources": []}),
            0,
        )),
        200 => {
            let mut v: Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
            let index = v["ModifyIndex"].as_u64().unwrap_or(0);
            if let Value::Object(m) = &mut v {
                m.remove("CreateIndex");
                m.remove("ModifyIndex");
            }
            Ok((v, index))
        }
        _ => Err(unexpected(&r)),
    }
}

enum Outcome {
    Created,
    /// The existing intention's `src => dst (action)`.
    Exists(String),
}

/// Adds (or with `replace`, replaces) one source of the destination's entry.
fn upsert(http: &HttpArgs, ixn: &Intention, replace: bool) -> Result<Outcome, String> {
    // A concurrent writer makes the CAS fail: re-read and try again, a few times.
    for _ in 0..5 {
        let (mut entry, index) = load_entry(http, &ixn.destination_name)?;
        let sources = entry
            .as_object_mut()
            .ok_or("the entry is not an object")?
            .entry("Sources")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = sources else {
            return Err("the entry's Sources is not a list".into());
        };
        let same = |s: &Value| {
            s.get("Name").and_then(Value::as_str) == Some(ixn.source_name.as_str())
                && s.get("Peer")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
        };
        if let Some(old) = list.iter().find(|s| same(s)) {
            if !replace {
                return Ok(Outcome::Exists(format!(
                    "{} => {} ({})",
                    ixn.source_name,
                    ixn.destination_name,
                    old.get("Action").and_then(Value::as_str).unwrap_or("")
                )));
            }
        }
        list.retain(|s| !same(s));
        let mut src = Map::new();
        src.insert("Name".into(), Value::from(ixn.source_name.clone()));
        match &ixn.permissions {
            Some(p) if p.as_array().is_some_and(|a| !a.is_empty()) => {
                src.insert("Permissions".into(), p.clone());
            }
            _ => {
                src.insert("Action".into(), Value::from(ixn.action.clone()));
            }
        }
        if !ixn.description.is_empty() {
            src.insert("Description".into(), Value::from(ixn.description.clone()));
        }
        list.push(Value::Object(src));
        if !ixn.meta.is_empty() {
            let meta = entry
                .as_object_mut()
                .ok_or("the entry is not an object")?
                .entry("Meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = meta {
                for (k, v) in &ixn.meta {
                    m.insert(k.clone(), Value::from(v.clone()));
                }
            }
        }
        let r = call(
            http,
            "PUT",
            &format!("{}?cas={index}", paths::CONFIG),
            Some(entry.to_string().into_bytes()),
        )
        .map_err(|e| format!("Error connecting to Tribune agent: {e}"))?;
        match (r.status, r.body.trim()) {
            (200, "true") => return Ok(Outcome::Created),
            (200, _) => continue,
            _ => return Err(unexpected(&r)),
        }
    }
    Err("the destination's entry kept changing; try again".into())
}

pub fn create(args: &CreateArgs, io: &mut Io<'_>) -> u8 {
    if args.allow && args.deny {
        let _ = writeln!(io.err, "Only one of -allow or -deny may be specified.");
        return 1;
    }
    let action = if args.deny { "deny" } else { "allow" };
    let ixns = if args.file {
        read_files(&args.args)
    } else {
        match args.args.as_slice() {
            [src, dst] => target(src, "source").and_then(|s| {
                let d = target(dst, "destination")?;
                Ok(vec![Intention {
                    source_name: s,
                    destination_name: d,
                    action: action.into(),
                    meta: parse_meta(&args.meta),
                    ..Intention::default()
                }])
            }),
            _ => Err("Must specify two arguments: source and destination".into()),
        }
    };
    let ixns = match ixns {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(io.err, "Error: {e}");
            return 1;
        }
    };
    for ixn in &ixns {
        match upsert(&args.http, ixn, args.replace) {
            Ok(Outcome::Created) => {
                let _ = writeln!(io.out, "Created: {}", ixn.label());
            }
            Ok(Outcome::Exists(old)) => {
                let _ = writeln!(
                    io.err,
                    "Error creating intention {:?}: Unexpected response code: 500 (duplicate intention found: {})",
                    ixn.label(),
                    old
                );
                return 1;
            }
            Err(e) => {
                let verb = if args.replace {
                    "replacing"
                } else {
                    "creating"
                };
                let _ = writeln!(io.err, "Error {verb} intention {:?}: {e}", ixn.label());
                return 1;
            }
        }
    }
    0
}

/// `SRC DST` of get and delete (Tribune's intentions have no IDs), and the exact
/// endpoint's path for them.
fn exact(args: &[String]) -> Result<(String, String, String), String> {
    let (src, dst) = match args {
        [src, dst] => (target(src, "source")?, target(dst, "destination")?),
        [_] => return Err("intentions in Tribune have no IDs (they are config entry sources): name them by SRC DST".into()),
        _ => return Err("command requires exactly 1 or 2 arguments".into()),
    };
    let path = format!(
        "{}?source={}&destination={}",
        paths::INTENTIONS_EXACT,
        encode(&src),
        encode(&dst)
    );
    Ok((src, dst, path))
}

pub fn get(args: &PairArgs, io: &mut Io<'_>) -> u8 {
    let (src, dst, path) = match exact(&args.args) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(io.err, "{e}");
            return 1;
        }
    };
    let r = match call(&args.http, "GET", &path, None) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(io.err, "Error connecting to Tribune agent: {e}");
            return 1;
        }
    };
    if r.status == 404 {
        let _ = writeln!(
            io.err,
            "Intention not found with source {src:?} and destination {dst:?}"
        );
        return 1;
    }
    if r.status != 200 {
        let _ = writeln!(io.err, "Error reading the intention: {}", unexpected(&r));
        return 1;
    }
    let ixn: Intention = match serde_json::from_str(&r.body) {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(io.err, "Error reading the intention: {e}");
            return 1;
        }
    };
    let mut rows = vec![
        vec!["Source:".to_string(), ixn.source_name.clone()],
        vec!["Destination:".to_string(), ixn.destination_name.clone()],
    ];
    if !ixn.action.is_empty() {
        rows.push(vec!["Action:".into(), ixn.action.clone()]);
    }
    if !ixn.id.is_empty() {
        rows.push(vec!["ID:".into(), ixn.id.clone()]);
    }
    if !ixn.description.is_empty() {
        rows.push(vec!["Description:".into(), ixn.description.clone()]);
    }
    for (k, v) in &ixn.meta {
        rows.push(vec![format!("Meta[{k}]:"), v.clone()]);
    }
    rows.push(vec!["Precedence:".into(), ixn.precedence.to_string()]);
    let _ = write!(io.out, "{}", columnize(&rows));
    if let Some(p) = ixn
        .permissions
        .as_ref()
        .filter(|p| p.as_array().is_some_and(|a| !a.is_empty()))
    {
        let text = serde_json::to_string_pretty(p).unwrap_or_default();
        let _ = writeln!(io.out, "Permissions:\n{text}");
    }
    0
}

pub fn list(args: &ListArgs, io: &mut Io<'_>) -> u8 {
    let r = match call_ok(
        &args.http,
        "GET",
        paths::INTENTIONS,
        None,
        "Failed to retrieve the intentions list",
        1,
        io,
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let ixns: Vec<Intention> = match serde_json::from_str(&r.body) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(io.err, "Failed to retrieve the intentions list: {e}");
            return 1;
        }
    };
    if ixns.is_empty() {
        let _ = writeln!(io.err, "There are no intentions.");
        return 2;
    }
    let mut rows = vec![["ID", "Source", "Action", "Destination", "Precedence"]
        .map(String::from)
        .to_vec()];
    for i in &ixns {
        rows.push(vec![
            i.id.clone(),
            i.source_name.clone(),
            i.action.clone(),
            i.destination_name.clone(),
            i.precedence.to_string(),
        ]);
    }
    let _ = write!(io.out, "{}", columnize(&rows));
    0
}

pub fn delete(args: &PairArgs, io: &mut Io<'_>) -> u8 {
    let path = match exact(&args.args) {
        Ok((_, _, path)) => path,
        Err(e) => {
            let _ = writeln!(io.err, "{e}");
            return 1;
        }
    };
    match call_ok(
        &args.http,
        "DELETE",
        &path,
        None,
        "Error deleting the intention",
        1,
        io,
    ) {
        Ok(_) => {
            let _ = writeln!(io.out, "Intention deleted.");
            0
        }
        Err(code) => code,
    }
}

pub fn matches(args: &MatchArgs, io: &mut Io<'_>) -> u8 {
    let [name] = args.args.as_slice() else {
        let _ = writeln!(
            io.err,
            "Error: command requires exactly one argument: src or dst"
        );
        return 1;
    };
    if args.source && args.destination {
        let _ = writeln!(
            io.err,
            "Error: only one of -source or -destination may be specified"
        );
        return 1;
    }
    let by = if args.source { "source" } else { "destination" };
    let path = format!("{}?by={by}&name={}", paths::INTENTIONS_MATCH, encode(name));
    let r = match call_ok(
        &args.http,
        "GET",
        &path,
        None,
        "Error matching the connection",
        1,
        io,
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut found: std::collections::HashMap<String, Vec<Intention>> =
        match serde_json::from_str(&r.body) {
            Ok(m) => m,
            Err(e) => {
                let _ = writeln!(io.err, "Error matching the connection: {e}");
                return 1;
            }
        };
    for ixn in found.remove(name.as_str()).unwrap_or_default() {
        let _ = writeln!(io.out, "{}", ixn.label());
    }
    0
}
