//! `tribune config ...`: config entries, offline (`validate`) and against the agent.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::{Args, Subcommand};
use std::io::Read;
use tribune_client::encode;
use tribune_model::api::paths;
use tribune_model::api::StagedCandidate;
use tribune_model::{decode::parse_raw, decode_object, Kind, WireEntry};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check one config entry file offline (HCL or JSON; `-` reads stdin).
    Validate(ValidateArgs),
    /// Create or update a config entry from one file (HCL or JSON; `-` reads stdin).
    #[command(override_usage = "tribune config write [OPTIONS] <FILE>")]
    Write(WriteArgs),
    /// Print one config entry as JSON.
    Read(ReadArgs),
    /// List the names of the config entries of a kind.
    List(ListArgs),
    /// Delete a config entry.
    Delete(DeleteArgs),
    /// Drop the staged candidate of an entry (`config write -stage`).
    Unstage(KindNameArgs),
    /// Make the staged candidate of an entry live, if the live entry is unchanged
    /// since it was staged (-force: even if it changed).
    Promote(PromoteArgs),
    /// Show staged candidates and what the sidecars saw: requests evaluated and
    /// requests the candidate would decide differently.
    Staged(StagedArgs),
}

#[derive(Debug, Args)]
pub struct KindNameArgs {
    /// The kind of the config entry (`service-intentions`, `jwt-provider`, `service-defaults`, `proxy-defaults`, `mesh`).
    #[arg(long)]
    pub kind: Option<String>,
    /// The name of the config entry (`global` for `proxy-defaults` and `mesh`).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub entry: KindNameArgs,
    /// Promote even if the live entry changed since the candidate was staged.
    #[arg(long)]
    pub force: bool,
    /// Promote only the candidate staged at this index (the `StagedIndex` that
    /// `config staged` showed): refused if it was staged again since.
    #[arg(long, value_name = "N")]
    pub index: Option<u64>,
}

#[derive(Debug, Args)]
pub struct StagedArgs {
    /// With -name: one candidate (else every candidate).
    #[arg(long)]
    pub kind: Option<String>,
    /// With -kind: the name of the entry whose candidate to show.
    #[arg(long)]
    pub name: Option<String>,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    pub format: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Path of the entry file, or `-` for standard input.
    pub file: String,
    /// On success, print the normalized entry as canonical JSON instead of a message.
    #[arg(long)]
    pub canonical: bool,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The one entry file to write (HCL or JSON), or `-` for standard input.
    #[arg(value_name = "FILE")]
    pub file: Vec<String>,
    /// Only write if the entry's ModifyIndex equals -modify-index (0: only create).
    #[arg(long)]
    pub cas: bool,
    /// With -cas: the ModifyIndex the stored entry must have (0: it must not exist).
    #[arg(long = "modify-index")]
    pub modify_index: Option<u64>,
    /// Store the entry as a staged candidate next to the live one (service-intentions,
    /// jwt-provider, mesh): sidecars evaluate it beside the live policy and never
    /// enforce it until `config promote`.
    #[arg(long)]
    pub stage: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The kind of the config entry (`service-intentions`, `jwt-provider`, `service-defaults`, `proxy-defaults`, `mesh`).
    #[arg(long)]
    pub kind: Option<String>,
    /// The name of the config entry (`global` for `proxy-defaults` and `mesh`).
    #[arg(long)]
    pub name: Option<String>,
    /// Read the staged candidate instead of the live entry.
    #[arg(long)]
    pub stage: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The kind of the config entry (`service-intentions`, `jwt-provider`, `service-defaults`, `proxy-defaults`, `mesh`).
    #[arg(long)]
    pub kind: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The kind of the config entry (`service-intentions`, `jwt-provider`, `service-defaults`, `proxy-defaults`, `mesh`).
    #[arg(long)]
    pub kind: Option<String>,
    /// The name of the config entry (`global` for `proxy-defaults` and `mesh`).
    #[arg(long)]
    pub name: Option<String>,
    /// Take kind and name from this entry file.
    #[arg(long)]
    pub filename: Option<String>,
    /// Only delete if the entry's ModifyIndex equals -modify-index.
    #[arg(long)]
    pub cas: bool,
    /// With -cas: the ModifyIndex the stored entry must have.
    #[arg(long = "modify-index")]
    pub modify_index: Option<u64>,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: ConfigCommand, io: &mut Io<'_>) -> u8 {
    match cmd {
        ConfigCommand::Validate(args) => validate(&args, io),
        ConfigCommand::Write(args) => write(&args, io),
        ConfigCommand::Read(args) => read(&args, io),
        ConfigCommand::List(args) => list(&args, io),
        ConfigCommand::Delete(args) => delete(&args, io),
        ConfigCommand::Unstage(args) => unstage(&args, io),
        ConfigCommand::Promote(args) => promote(&args, io),
        ConfigCommand::Staged(args) => staged(&args, io),
    }
}

/// Reads a file argument the way Consul's CLI does (`-` is stdin).
pub fn load_input(path: &str) -> Result<String, String> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        Ok(s)
    } else {
        super::read_file(path)
    }
}

fn validate(args: &ValidateArgs, io: &mut Io<'_>) -> u8 {
    let text = match load_input(&args.file) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(io.err, "Failed to load data: {e}");
            return 1;
        }
    };
    let wire = match tribune_model::decode_text(&text) {
        Ok(w) => w,
        Err(e) => {
            let _ = write!(io.err, "Failed to decode config entry input: {e}");
            if !e.to_string().ends_with('\n') {
                let _ = writeln!(io.err);
            }
            return 1;
        }
    };
    let label = wire_label(&wire);
    match wire.into_entry() {
        Ok(entry) => {
            if args.canonical {
                let pretty = serde_json::to_string_pretty(&entry).unwrap_or_default();
                let _ = writeln!(io.out, "{pretty}");
            } else {
                let _ = writeln!(
                    io.out,
                    "Config entry is valid: {}/{}",
                    entry.kind(),
                    entry.name()
                );
                let extensions = entry.tribune_extensions();
                if !extensions.is_empty() {
                    let _ = writeln!(
                        io.out,
                        "note: uses Tribune extensions: {} (Consul would refuse this file)",
                        extensions.join(", ")
                    );
                }
                // What the entry earns on its own (the agent adds the checks against
                // its other entries when it is written).
                for w in tribune_authz::entry_warnings(&entry) {
                    let _ = writeln!(io.err, "WARNING: {w}");
                }
            }
            0
        }
        Err(errors) => {
            let _ = writeln!(io.err, "Config entry {label} is invalid:");
            for e in &errors.0 {
                let _ = writeln!(io.err, "  * {}", e.with_path());
            }
            1
        }
    }
}

fn wire_kind_name(w: &WireEntry) -> (&'static str, String) {
    match w {
        WireEntry::ServiceDefaults(e) => ("service-defaults", e.name.clone().unwrap_or_default()),
        WireEntry::ProxyDefaults(e) => (
            "proxy-defaults",
            e.name.clone().unwrap_or_else(|| "global".into()),
        ),
        WireEntry::ServiceIntentions(e) => {
            ("service-intentions", e.name.clone().unwrap_or_default())
        }
        WireEntry::JwtProvider(e) => ("jwt-provider", e.name.clone().unwrap_or_default()),
        WireEntry::Mesh(_) => ("mesh", tribune_model::mesh::MESH_NAME.into()),
    }
}

fn wire_label(w: &WireEntry) -> String {
    let (k, n) = wire_kind_name(w);
    format!("{k}/{n}")
}

/// Decodes a file client-side (Consul's CLI does too) and returns the raw JSON body
/// to send, with the entry's kind and name.
/// A file decoded for the API: the body sent, its kind and name, and the Tribune
/// extensions it uses (when it validates).
type Decoded = (Vec<u8>, &'static str, String, Vec<&'static str>);

fn decode_file(path: &str, io: &mut Io<'_>) -> Result<Decoded, u8> {
    let text = load_input(path).map_err(|e| {
        let _ = writeln!(io.err, "Failed to load data: {e}");
        1
    })?;
    let fail = |e: &dyn std::fmt::Display, io: &mut Io<'_>| {
        let s = e.to_string();
        let _ = write!(io.err, "Failed to decode config entry input: {s}");
        if !s.ends_with('\n') {
            let _ = writeln!(io.err);
        }
        1
    };
    let raw = parse_raw(&text).map_err(|e| fail(&e, io))?;
    let body = serde_json::to_vec(&raw).unwrap_or_default();
    let wire = decode_object(raw).map_err(|e| fail(&e, io))?;
    let (kind, name) = wire_kind_name(&wire);
    let extensions = wire
        .into_entry()
        .map(|e| e.tribune_extensions())
        .unwrap_or_default();
    Ok((body, kind, name, extensions))
}

fn write(args: &WriteArgs, io: &mut Io<'_>) -> u8 {
    if args.file.len() != 1 {
        let _ = writeln!(
            io.err,
            "Must provide exactly one positional argument to specify the config entry to write"
        );
        return 1;
    }
    let (body, kind, name, extensions) = match decode_file(&args.file[0], io) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if args.stage && args.cas {
        let _ = writeln!(
            io.err,
            "-stage and -cas cannot be used together (promote checks the live entry)"
        );
        return 1;
    }
    // A provider's keys are fetched by the agent as the write is made, and a failure
    // is a warning (`check=true`).
    let path = if args.stage {
        format!("{}?stage=true", paths::CONFIG)
    } else if args.cas {
        format!(
            "{}?cas={}&check=true",
            paths::CONFIG,
            args.modify_index.unwrap_or(0)
        )
    } else {
        format!("{}?check=true", paths::CONFIG)
    };
    let r = match call_ok(
        &args.http,
        "PUT",
        &path,
        Some(body),
        &format!("Error writing config entry {kind}/{name}"),
        1,
        io,
    ) {
        Ok(r) => r,
        Err(c) => return c,
    };
    for w in r.headers_named("x-tribune-warning") {
        let _ = writeln!(io.err, "WARNING: {w}");
    }
    if r.body.trim() == "true" {
        let what = if args.stage { "staged" } else { "written" };
        let _ = writeln!(io.out, "Config entry {what}: {kind}/{name}");
        if !extensions.is_empty() {
            let _ = writeln!(
                io.err,
                "note: uses Tribune extensions: {} (Consul would refuse this file)",
                extensions.join(", ")
            );
        }
        0
    } else {
        let _ = writeln!(io.err, "Config entry not updated: {kind}/{name}");
        1
    }
}

fn read(args: &ReadArgs, io: &mut Io<'_>) -> u8 {
    let Some(kind) = args.kind.as_deref().filter(|k| !k.is_empty()) else {
        let _ = writeln!(io.err, "Must specify the -kind parameter");
        return 1;
    };
    let Some(name) = args.name.as_deref().filter(|n| !n.is_empty()) else {
        let _ = writeln!(io.err, "Must specify the -name parameter");
        return 1;
    };
    let r = match call_ok(
        &args.http,
        "GET",
        &format!(
            "{}{}",
            paths::fill(paths::CONFIG_ENTRY, &[&encode(kind), &encode(name)]),
            if args.stage { "?stage=true" } else { "" }
        ),
        None,
        &format!("Error reading config entry {kind}/{name}"),
        1,
        io,
    ) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let mut v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("Hash");
    }
    let _ = writeln!(io.out, "{}", pretty4(&v));
    0
}

fn kind_name<'a>(args: &'a KindNameArgs, io: &mut Io<'_>) -> Result<(&'a str, &'a str), u8> {
    let Some(kind) = args.kind.as_deref().filter(|k| !k.is_empty()) else {
        let _ = writeln!(io.err, "Must specify the -kind parameter");
        return Err(1);
    };
    let Some(name) = args.name.as_deref().filter(|n| !n.is_empty()) else {
        let _ = writeln!(io.err, "Must specify the -name parameter");
        return Err(1);
    };
    Ok((kind, name))
}

fn unstage(args: &KindNameArgs, io: &mut Io<'_>) -> u8 {
    let (kind, name) = match kind_name(args, io) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match call_ok(
        &args.http,
        "DELETE",
        &format!(
            "{}?stage=true",
            paths::fill(paths::CONFIG_ENTRY, &[&encode(kind), &encode(name)])
        ),
        None,
        &format!("Error unstaging config entry {kind}/{name}"),
        1,
        io,
    ) {
        Ok(_) => {
            let _ = writeln!(io.out, "Config entry unstaged: {kind}/{name}");
            0
        }
        Err(c) => c,
    }
}

fn promote(args: &PromoteArgs, io: &mut Io<'_>) -> u8 {
    let (kind, name) = match kind_name(&args.entry, io) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let mut query: Vec<String> = Vec::new();
    if args.force {
        query.push("force=true".into());
    }
    if let Some(i) = args.index {
        query.push(format!("index={i}"));
    }
    let path = format!(
        "{}{}{}",
        paths::fill(paths::STAGED_PROMOTE, &[&encode(kind), &encode(name)]),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    match super::http::call(&args.entry.http, "PUT", &path, None) {
        Err(e) => {
            let _ = writeln!(io.err, "Error connecting to Tribune agent: {e}");
            1
        }
        Ok(r) if r.status == 200 => {
            let _ = writeln!(io.out, "Config entry promoted: {kind}/{name}");
            0
        }
        Ok(r) if r.status == 409 || r.status == 404 => {
            let _ = writeln!(
                io.err,
                "Error promoting config entry {kind}/{name}: {}",
                r.body.trim()
            );
            1
        }
        Ok(r) => {
            let _ = writeln!(
                io.err,
                "Error promoting config entry {kind}/{name}: {}",
                super::http::unexpected(&r)
            );
            1
        }
    }
}

fn staged(args: &StagedArgs, io: &mut Io<'_>) -> u8 {
    let path = match (args.kind.as_deref(), args.name.as_deref()) {
        (Some(k), Some(n)) => paths::fill(paths::STAGED_ENTRY, &[&encode(k), &encode(n)]),
        (None, None) => paths::STAGED.to_string(),
        _ => {
            let _ = writeln!(io.err, "Must specify both -kind and -name, or neither");
            return 1;
        }
    };
    if args.format != "text" && args.format != "json" {
        let _ = writeln!(
            io.err,
            "-format must be \"text\" or \"json\", got {:?}",
            args.format
        );
        return 1;
    }
    let r = match call_ok(
        &args.http,
        "GET",
        &path,
        None,
        "Error reading staged candidates",
        1,
        io,
    ) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) else {
        let _ = writeln!(
            io.err,
            "Error reading staged candidates: not JSON: {}",
            r.body.trim()
        );
        return 1;
    };
    if args.format == "json" {
        let _ = writeln!(io.out, "{}", pretty4(&v));
        return 0;
    }
    let list = match v {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    let list: Vec<StagedCandidate> = match list.into_iter().map(serde_json::from_value).collect() {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(
                io.err,
                "Error reading staged candidates: unexpected answer: {e}"
            );
            return 1;
        }
    };
    for c in &list {
        let _ = writeln!(
            io.out,
            "{}/{} (staged at index {})",
            c.kind, c.name, c.staged_index
        );
        let sidecars = c.sidecars.len();
        let _ = writeln!(
            io.out,
            "  requests seen: {}, would change: {} ({sidecars} sidecar{})",
            c.seen,
            c.changed,
            if sidecars == 1 { "" } else { "s" }
        );
        if c.live_changed {
            let _ = writeln!(
                io.out,
                "  the live entry changed since staging (ModifyIndex {} then, {} now): promote needs -force",
                c.live_index_at_staging, c.live_index
            );
        }
    }
    if list.is_empty() {
        let _ = writeln!(io.out, "No staged candidates");
    }
    0
}

/// JSON with 4-space indentation (what `consul config read` prints).
pub(crate) fn pretty4(v: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8_lossy(&buf).into_owned()
}

fn list(args: &ListArgs, io: &mut Io<'_>) -> u8 {
    let Some(kind) = args.kind.as_deref().filter(|k| !k.is_empty()) else {
        let _ = writeln!(io.err, "Must specify the -kind parameter");
        return 1;
    };
    let r = match call_ok(
        &args.http,
        "GET",
        &paths::fill(paths::CONFIG_KIND, &[&encode(kind)]),
        None,
        &format!("Error listing config entries for kind {kind:?}"),
        1,
        io,
    ) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    for e in v.as_array().into_iter().flatten() {
        let _ = writeln!(io.out, "{}", e["Name"].as_str().unwrap_or(""));
    }
    0
}

fn delete(args: &DeleteArgs, io: &mut Io<'_>) -> u8 {
    let (kind, name) = match (&args.filename, &args.kind, &args.name) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            let _ = writeln!(io.err, "filename can't be used with kind or name");
            return 1;
        }
        (Some(f), None, None) => match decode_file(f, io) {
            Ok((_, k, n, _)) => (k.to_string(), n),
            Err(code) => return code,
        },
        (None, None, None) => {
            let _ = writeln!(io.err, "Must specify the -kind or -filename parameter");
            return 1;
        }
        (None, None, Some(_)) => {
            let _ = writeln!(io.err, "Must specify the -kind parameter");
            return 1;
        }
        (None, Some(_), None) => {
            let _ = writeln!(io.err, "Must specify the -name parameter");
            return 1;
        }
        (None, Some(k), Some(n)) => (k.clone(), n.clone()),
    };
    if args.cas && args.modify_index.unwrap_or(0) == 0 {
        let _ = writeln!(
            io.err,
            "Must specify a -modify-index greater than 0 with -cas"
        );
        return 1;
    }
    if !args.cas && args.modify_index.is_some() {
        let _ = writeln!(io.err, "Cannot specify -modify-index without -cas");
        return 1;
    }
    if Kind::parse(&kind).is_err() {
        let _ = writeln!(
            io.err,
            "Error deleting config entry {kind}/{name}: invalid config entry kind: {kind}"
        );
        return 1;
    }
    let mut path = paths::fill(paths::CONFIG_ENTRY, &[&encode(&kind), &encode(&name)]);
    if args.cas {
        path.push_str(&format!("?cas={}", args.modify_index.unwrap_or(0)));
    }
    let failure = format!("Error deleting config entry {kind}/{name}");
    let r = match call_ok(&args.http, "DELETE", &path, None, &failure, 1, io) {
        Ok(r) => r,
        Err(c) => return c,
    };
    if args.cas && r.body.trim() != "true" {
        let _ = writeln!(io.err, "Config entry not deleted: {kind}/{name}");
        return 1;
    }
    let _ = writeln!(io.out, "Config entry deleted: {kind}/{name}");
    0
}

#[cfg(test)]
mod tests {
    use crate::cli::tests::run_args;

    fn example(name: &str) -> String {
        format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn validate_prints_valid_for_the_seed_provider() {
        let (code, out, err) = run_args(&["config", "validate", &example("okta-provider.hcl")]);
        assert_eq!(
            (code, out.as_str()),
            (0, "Config entry is valid: jwt-provider/okta\n")
        );
        // The seed's own mistakes, named (issue #42).
        assert!(
            err.contains("WARNING: jwt-provider \"okta\": Issuer \"okta\" is not a URL"),
            "{err}"
        );
        assert!(
            err.contains("WARNING: jwt-provider \"okta\" has no Audiences"),
            "{err}"
        );
    }

    #[test]
    fn validate_names_the_tribune_extensions_a_file_uses() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("optional.hcl");
        std::fs::write(
            &f,
            "Kind = \"service-intentions\"\nName = \"api\"\nJWT { Optional = true Providers = [ { Name = \"okta\" } ] }\nSources = [ { Name = \"web\" Action = \"allow\" } ]\n",
        )
        .unwrap();
        let path = f.to_str().unwrap();
        assert_eq!(
            run_args(&["config", "validate", path]),
            (
                0,
                "Config entry is valid: service-intentions/api\nnote: uses Tribune extensions: Optional (Consul would refuse this file)\n".into(),
                String::new()
            )
        );
        let (_, canonical, _) = run_args(&["config", "validate", "-canonical", path]);
        assert!(canonical.contains("\"Optional\": true"), "{canonical}");
        let p = dir.path().join("claims.hcl");
        std::fs::write(
            &p,
            "Kind = \"jwt-provider\"\nName = \"okta\"\nJSONWebKeySet { Local { Filename = \"/k\" } }\nClaimToHeaders = [ { Path = [\"perms\", \"role\"] HeaderName = \"x-role\" } ]\n",
        )
        .unwrap();
        let (code, out, _) = run_args(&["config", "validate", p.to_str().unwrap()]);
        assert_eq!(code, 0);
        assert!(
            out.ends_with(
                "note: uses Tribune extensions: ClaimToHeaders (Consul would refuse this file)\n"
            ),
            "{out}"
        );
        std::fs::write(
            &p,
            "Kind = \"jwt-provider\"\nName = \"okta\"\nJSONWebKeySet { Local { Filename = \"/k\" } }\nClaimToHeaders = [ { Path = [] HeaderName = \"bad header\" } ]\n",
        )
        .unwrap();
        let (code, _, err) = run_args(&["config", "validate", p.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert!(err.contains("ClaimToHeaders[0].Path"), "{err}");
        assert!(err.contains("ClaimToHeaders[0].HeaderName"), "{err}");
        // Consul's own files: no note, and nothing added to their canonical form.
        let (_, out, _) = run_args(&["config", "validate", &example("api-intentions.hcl")]);
        assert_eq!(out, "Config entry is valid: service-intentions/api\n");
        let (_, canonical, _) = run_args(&[
            "config",
            "validate",
            "-canonical",
            &example("api-intentions.hcl"),
        ]);
        assert!(!canonical.contains("Optional"), "{canonical}");
    }

    #[test]
    fn validate_reports_every_error_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.hcl");
        std::fs::write(
            &f,
            r#"Kind = "jwt-provider"
Name = "bad"
JSONWebKeySet { Remote { URI = "" } }
Locations = [ { Header { } }, { Cookie { Name = "c" } QueryParam { Name = "q" } } ]
Forwarding { PadForwardPayloadHeader = true }
"#,
        )
        .unwrap();
        let (code, out, err) = run_args(&["config", "validate", f.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(
            err,
            "Config entry jwt-provider/bad is invalid:\n\
             \x20 * JSONWebKeySet.Remote.URI: Remote JWKS URI is required\n\
             \x20 * Locations[0].Header.Name: JWT location header name must be specified\n\
             \x20 * Locations[1]: must set exactly one of: JWT location header, query param or cookie\n\
             \x20 * Forwarding.HeaderName: Header name required for forwarding config\n"
        );
    }

    #[test]
    fn validate_reports_decode_errors_like_consul() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("unknown.json");
        std::fs::write(
            &f,
            r#"{"Kind":"jwt-provider","Name":"x","Bogus":1,"Namespace":"ns"}"#,
        )
        .unwrap();
        let (code, _, err) = run_args(&["config", "validate", f.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "Failed to decode config entry input: 2 errors occurred:\n\
             \t* invalid config key \"Bogus\"\n\
             \t* invalid config key \"Namespace\", namespaces are a consul enterprise feature\n\n"
        );
    }

    #[test]
    fn validate_missing_file_fails_to_load() {
        let (code, _, err) = run_args(&["config", "validate", "/nonexistent/x.hcl"]);
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "Failed to load data: Failed to read file \"/nonexistent/x.hcl\": No such file or directory\n"
        );
    }

    #[test]
    fn validate_canonical_prints_normalized_json() {
        let (code, out, _) = run_args(&[
            "config",
            "validate",
            "-canonical",
            &example("okta-provider.hcl"),
        ]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Kind"], "jwt-provider");
        assert_eq!(v["ClockSkewSeconds"], 30);
        assert_eq!(
            v["JSONWebKeySet"]["Remote"]["CacheDuration"],
            1_800_000_000_000_i64
        );
    }
}
