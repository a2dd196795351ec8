//! `tribune intention check SRC DST` and `tribune intention test FILE...`.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::{Args, Subcommand};
use tribune_client::encode;
use tribune_enforce::explain::{ExplainRequest, ExplainResponse};
use tribune_model::api::paths;
use tribune_model::api::ReplayResult;

#[derive(Debug, Subcommand)]
pub enum IntentionCommand {
    /// Check whether SRC may connect to DST (exit 0 allowed, 1 denied, 2 error).
    Check(CheckArgs),
    /// Run policy test cases (HCL or JSON `Test` blocks) against the agent's entries or,
    /// with -entries DIR, against entry files (exit 0 all pass, 1 any fails, 2 error).
    Test(super::intention_test::TestArgs),
    /// Evaluate a candidate entry file on a sidecar's recent requests (its replay
    /// window): how many would be decided differently, grouped (exit 0; 1 on error).
    Replay(ReplayArgs),
    /// Create an intention: a source of the destination's service-intentions entry
    /// (default allow; -deny; -replace an existing one; -file reads JSON intentions).
    Create(super::intention_crud::CreateArgs),
    /// Show an intention (SRC DST).
    Get(super::intention_crud::PairArgs),
    /// List every intention the token may read.
    List(super::intention_crud::ListArgs),
    /// Delete an intention (SRC DST); the entry goes when its last source does.
    Delete(super::intention_crud::PairArgs),
    /// Show the intentions that match a destination (default) or -source, in the
    /// order they are evaluated.
    Match(super::intention_crud::MatchArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The candidate entry (HCL or JSON): service-intentions, jwt-provider or mesh.
    pub file: Vec<String>,
    /// The sidecar's admin listener (`-admin-bind` of `tribune connect proxy`).
    #[arg(long = "proxy-admin", default_value = "127.0.0.1:19000")]
    pub proxy_admin: String,
    /// `text` or `json` (`{"Requests", "Changed", "Assumed", "Groups"}`, and
    /// `Truncated`, `Replayed`, `Recorded` when the sidecar's time budget cut it short).
    #[arg(long, default_value = "text")]
    pub format: String,
    /// The agent the candidate's providers are read from (a provider the sidecar does
    /// not verify yet travels with the candidate).
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// SRC DST, or only DST with -edge.
    pub services: Vec<String>,
    /// The caller is outside the mesh (the sidecar's edge listener): give only DST.
    #[arg(long)]
    pub edge: bool,
    /// HTTP method of the request to decide (L7 check).
    #[arg(long)]
    pub method: Option<String>,
    /// HTTP path of the request to decide, with its query (normalized as the sidecar
    /// normalizes it).
    #[arg(long)]
    pub path: Option<String>,
    /// A request header, `Name: value`; repeatable (a repeated name keeps every value).
    #[arg(long)]
    pub header: Vec<String>,
    /// A request cookie, `name=value`; repeatable.
    #[arg(long)]
    pub cookie: Vec<String>,
    /// Explain for a sidecar started with -merge-slashes.
    #[arg(long = "merge-slashes")]
    pub merge_slashes: bool,
    /// Output format with -explain: `text` or `json` (the explain API's answer).
    #[arg(long, default_value = "text")]
    pub format: String,
    /// A request token (JWT) to verify and use in the decision.
    #[arg(long)]
    pub jwt: Option<String>,
    /// Read the request token from a file.
    #[arg(long = "jwt-file")]
    pub jwt_file: Option<String>,
    /// Say why: the matched intention, permission and the failing check.
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: IntentionCommand, io: &mut Io<'_>) -> u8 {
    match cmd {
        IntentionCommand::Check(args) => check(&args, io),
        IntentionCommand::Test(args) => super::intention_test::run(&args, io),
        IntentionCommand::Replay(args) => replay(&args, io),
        IntentionCommand::Create(args) => super::intention_crud::create(&args, io),
        IntentionCommand::Get(args) => super::intention_crud::get(&args, io),
        IntentionCommand::List(args) => super::intention_crud::list(&args, io),
        IntentionCommand::Delete(args) => super::intention_crud::delete(&args, io),
        IntentionCommand::Match(args) => super::intention_crud::matches(&args, io),
    }
}

fn check(args: &CheckArgs, io: &mut Io<'_>) -> u8 {
    let (src, dst) = match (args.edge, args.services.as_slice()) {
        (false, [src, dst]) => (Some(src.as_str()), dst.as_str()),
        (true, [dst]) => (None, dst.as_str()),
        (false, _) => {
            let _ = writeln!(
                io.err,
                "Error: command requires exactly two arguments: src and dst"
            );
            return 2;
        }
        (true, _) => {
            let _ = writeln!(
                io.err,
                "Error: with -edge, command requires exactly one argument: dst"
            );
            return 2;
        }
    };
    if args.format != "text" && args.format != "json" {
        let _ = writeln!(
            io.err,
            "Error: -format must be \"text\" or \"json\", got {:?}",
            args.format
        );
        return 2;
    }
    let l7 = args.method.is_some()
        || args.path.is_some()
        || !args.header.is_empty()
        || !args.cookie.is_empty()
        || args.jwt.is_some()
        || args.jwt_file.is_some()
        || args.merge_slashes;
    let Some(src) = src.filter(|_| !(l7 || args.explain)) else {
        return explain(args, src, dst, io);
    };
    let path = format!(
        "{}?source={}&destination={}",
        paths::INTENTIONS_CHECK,
        encode(src),
        encode(dst)
    );
    let r = match call_ok(
        &args.http,
        "GET",
        &path,
        None,
        "Error checking the connection",
        2,
        io,
    ) {
        Ok(r) => r,
        Err(c) => return c,
    };
    match serde_json::from_str::<tribune_model::api::IntentionCheck>(&r.body)
        .ok()
        .map(|c| c.allowed)
    {
        Some(true) => {
            let _ = writeln!(io.out, "Allowed");
            0
        }
        Some(false) => {
            let _ = writeln!(io.out, "Denied");
            1
        }
        None => {
            let _ = writeln!(
                io.err,
                "Error checking the connection: the agent's answer is not a check result: {}",
                r.body.trim()
            );
            2
        }
    }
}

fn explain(args: &CheckArgs, src: Option<&str>, dst: &str, io: &mut Io<'_>) -> u8 {
    let token = match super::http::jwt_arg(&args.jwt, &args.jwt_file) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(io.err, "Error: {e}");
            return 2;
        }
    };
    let mut request = ExplainRequest {
        source: src.map(str::to_string),
        destination: dst.to_string(),
        method: args.method.clone(),
        path: args.path.clone(),
        cookies: args.cookie.clone(),
        token,
        merge_slashes: args.merge_slashes,
        ..ExplainRequest::default()
    };
    for h in &args.header {
        if let Err(e) = request.add_header(h) {
            let _ = writeln!(io.err, "Error: -header: {e}");
            return 2;
        }
    }
    let body = match serde_json::to_vec(&request) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(io.err, "Error: {e}");
            return 2;
        }
    };
    let r = match call_ok(
        &args.http,
        "POST",
        paths::INTENTIONS_EXPLAIN,
        Some(body),
        "Error checking the connection",
        2,
        io,
    ) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let answer: ExplainResponse = match serde_json::from_str(&r.body) {
        Ok(a) => a,
        Err(_) => {
            let _ = writeln!(
                io.err,
                "Error checking the connection: the agent's answer is not an explanation: {}",
                r.body.trim()
            );
            return 2;
        }
    };
    if args.format == "json" {
        let _ = writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        print_answer(&answer, args.explain, io);
    }
    if answer.allowed {
        0
    } else {
        1
    }
}

/// The text form of an explanation (`Allowed`/`Denied`, then why with -explain).
pub(crate) fn print_answer(answer: &ExplainResponse, why: bool, io: &mut Io<'_>) {
    let _ = writeln!(
        io.out,
        "{}",
        if answer.allowed { "Allowed" } else { "Denied" }
    );
    if !why {
        return;
    }
    let _ = writeln!(io.out, "{}", answer.reason);
    if !answer.allowed {
        match answer.status {
            Some(status) => {
                let _ = write!(io.out, "The caller would get HTTP {status}");
                if let Some(b) = answer.body.as_deref().filter(|b| !b.is_empty()) {
                    let _ = write!(io.out, " ({b})");
                }
                let _ = writeln!(io.out);
            }
            None => {
                let _ = writeln!(io.out, "The sidecar would close the connection");
            }
        }
    }
}

fn replay(args: &ReplayArgs, io: &mut Io<'_>) -> u8 {
    let [file] = args.file.as_slice() else {
        let _ = writeln!(
            io.err,
            "Error: command requires exactly one argument: the candidate entry file"
        );
        return 1;
    };
    if args.format != "text" && args.format != "json" {
        let _ = writeln!(
            io.err,
            "Error: -format must be \"text\" or \"json\", got {:?}",
            args.format
        );
        return 1;
    }
    let text = match super::read_file(file) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(io.err, "{e}");
            return 1;
        }
    };
    let entry = match tribune_model::decode_text(&text).map(|w| w.into_entry()) {
        Ok(Ok(e)) => e,
        Ok(Err(v)) => {
            let _ = writeln!(io.err, "Config entry in {file:?} is invalid: {v}");
            return 1;
        }
        Err(e) => {
            let _ = writeln!(io.err, "Failed to decode config entry input {file:?}: {e}");
            return 1;
        }
    };
    let mut body = vec![entry.to_json()];
    if let tribune_model::ConfigEntry::ServiceIntentions(si) = &entry {
        for name in si.referenced_providers() {
            if name == tribune_authz::ANY_PROVIDER {
                continue;
            }
            let path = paths::fill(paths::CONFIG_ENTRY, &["jwt-provider", &encode(name)]);
            // The sidecar says so if it needs a provider it cannot get.
            if let Ok(r) = super::http::call(&args.http, "GET", &path, None) {
                if let (200, Ok(v)) = (r.status, serde_json::from_str::<serde_json::Value>(&r.body))
                {
                    body.push(v);
                }
            }
        }
    }
    // The sidecar's admin listener is plain HTTP on loopback, whatever the
    // agent's CONSUL_HTTP_SSL says.
    let admin = if args.proxy_admin.contains("://") {
        args.proxy_admin.clone()
    } else {
        format!("http://{}", args.proxy_admin)
    };
    let http = HttpArgs {
        http_addr: Some(admin),
        token: Some(String::new()),
        ..HttpArgs::default()
    };
    let body = serde_json::Value::Array(body).to_string().into_bytes();
    let r = match super::http::call(&http, "POST", "/replay", Some(body)) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                io.err,
                "Error connecting to the sidecar's admin listener: {e}"
            );
            return 1;
        }
    };
    if r.status != 200 {
        let _ = writeln!(io.err, "Error replaying {file}: {}", r.body.trim());
        return 1;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) else {
        let _ = writeln!(
            io.err,
            "Error replaying {file}: the answer is not JSON: {}",
            r.body.trim()
        );
        return 1;
    };
    if args.format == "json" {
        let _ = writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        );
        return 0;
    }
    let v: ReplayResult = match serde_json::from_value(v) {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(io.err, "Error replaying {file}: unexpected answer: {e}");
            return 1;
        }
    };
    let _ = writeln!(
        io.out,
        "Replayed {} requests: {} would change",
        v.requests, v.changed
    );
    if v.assumed > 0 {
        let _ = writeln!(
            io.out,
            "  ({} carried a token this sidecar did not verify at the time; taken as valid, without claims)",
            v.assumed
        );
    }
    if let Some(t) = v.truncated {
        let _ = writeln!(
            io.out,
            "  (stopped at the sidecar's time budget: the newest {} of {} recorded requests are not included)",
            t.recorded.saturating_sub(t.replayed),
            t.recorded
        );
    }
    for g in &v.groups {
        let _ = writeln!(
            io.out,
            "  {:>6}  {} {} from {}: {} -> {} ({}, HTTP {}), e.g. {}",
            g.count,
            g.method,
            g.path_prefix,
            g.caller,
            g.live,
            g.candidate,
            g.reason,
            g.candidate_status,
            g.example
        );
    }
    0
}
