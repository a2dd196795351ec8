//! `tribune intention check SRC DST` and `tribune intention test FILE...`.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::{Args, Subcommand};
use tribune_client::encode;
use tribune_enforce::explain::{ExplainRequest, ExplainResponse};

#[derive(Debug, Subcommand)]
pub enum IntentionCommand {
    /// Check whether SRC may connect to DST (exit 0 allowed, 1 denied, 2 error).
    Check(CheckArgs),
    /// Run policy test cases (HCL or JSON `Test` blocks) against the agent's entries or,
    /// with -entries DIR, against entry files (exit 0 all pass, 1 any fails, 2 error).
    Test(super::intention_test::TestArgs),
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
        "/v1/connect/intentions/check?source={}&destination={}",
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
    match serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["Allowed"].as_bool())
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
    let token = match (&args.jwt, &args.jwt_file) {
        (Some(_), Some(_)) => {
            let _ = writeln!(io.err, "Error: -jwt and -jwt-file cannot be used together");
            return 2;
        }
        (Some(t), None) => Some(t.trim().to_string()),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                let _ = writeln!(io.err, "Error reading {f}: {e}");
                return 2;
            }
        },
        (None, None) => None,
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
        "/v1/connect/intentions/explain",
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
