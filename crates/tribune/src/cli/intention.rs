//! `tribune intention check SRC DST`.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::{Args, Subcommand};
use tribune_client::encode;

#[derive(Debug, Subcommand)]
pub enum IntentionCommand {
    /// Check whether SRC may connect to DST (exit 0 allowed, 1 denied, 2 error).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub services: Vec<String>,
    /// HTTP method of the request to decide (L7 check).
    #[arg(long)]
    pub method: Option<String>,
    /// HTTP path of the request to decide (normalized like the proxy does).
    #[arg(long)]
    pub path: Option<String>,
    /// A request header, `Name: value`; repeatable.
    #[arg(long)]
    pub header: Vec<String>,
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
    }
}

fn check(args: &CheckArgs, io: &mut Io<'_>) -> u8 {
    let [src, dst] = args.services.as_slice() else {
        let _ = writeln!(
            io.err,
            "Error: command requires exactly two arguments: src and dst"
        );
        return 2;
    };
    let l7 = args.method.is_some()
        || args.path.is_some()
        || !args.header.is_empty()
        || args.jwt.is_some()
        || args.jwt_file.is_some();
    if l7 || args.explain {
        return explain(args, src, dst, io);
    }
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
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    if v["Allowed"].as_bool() == Some(true) {
        let _ = writeln!(io.out, "Allowed");
        0
    } else {
        let _ = writeln!(io.out, "Denied");
        1
    }
}

fn explain(args: &CheckArgs, src: &str, dst: &str, io: &mut Io<'_>) -> u8 {
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
    let mut headers = serde_json::Map::new();
    for h in &args.header {
        let Some((name, value)) = h.split_once(':') else {
            let _ = writeln!(io.err, "Error: -header must be \"Name: value\", got {h:?}");
            return 2;
        };
        headers.insert(
            name.trim().to_string(),
            serde_json::Value::from(value.trim()),
        );
    }
    let body = serde_json::json!({
        "Source": src,
        "Destination": dst,
        "Method": args.method.clone().unwrap_or_else(|| "GET".into()),
        "Path": args.path.clone().unwrap_or_else(|| "/".into()),
        "Headers": headers,
        "Token": token,
    });
    let r = match call_ok(
        &args.http,
        "POST",
        "/v1/connect/intentions/explain",
        Some(body.to_string().into_bytes()),
        "Error checking the connection",
        2,
        io,
    ) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    let allowed = v["Allowed"].as_bool() == Some(true);
    let _ = writeln!(io.out, "{}", if allowed { "Allowed" } else { "Denied" });
    if args.explain {
        let _ = writeln!(io.out, "{}", v["Reason"].as_str().unwrap_or(""));
        if !allowed {
            let _ = write!(io.out, "The caller would get HTTP {}", v["Status"]);
            if let Some(b) = v["Body"].as_str() {
                let _ = write!(io.out, " ({b})");
            }
            let _ = writeln!(io.out);
        }
    }
    if allowed {
        0
    } else {
        1
    }
}
