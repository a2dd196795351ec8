//! `tribune jwt-provider check NAME`: the agent fetches the provider's keys the way a
//! sidecar does and reports every step (`GET|POST /v1/tribune/jwt-provider/<name>/check`).

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::{Args, Subcommand};
use tribune_client::encode;
use tribune_jwks::check::Report;
use tribune_model::api::paths;

#[derive(Debug, Subcommand)]
pub enum JwtProviderCommand {
    /// Fetch the provider's keys as a sidecar would and report each step: DNS, TCP,
    /// TLS (server name sent, CA, the certificate's names), HTTP, the discovery
    /// document, the key set and each key; with -jwt, the token's verification too.
    /// Exit 0 when the keys are usable (and the token verifies), 1 otherwise.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The jwt-provider entry's name.
    pub name: Vec<String>,
    /// A token to verify with the provider (header, signature, claims, Issuer,
    /// Audiences, expiry). `-token` stays the ACL token, as on every command.
    #[arg(long)]
    pub jwt: Option<String>,
    /// Read the token to verify from a file.
    #[arg(long = "jwt-file")]
    pub jwt_file: Option<String>,
    /// `text` or `json` (the API's report).
    #[arg(long, default_value = "text")]
    pub format: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: JwtProviderCommand, io: &mut Io<'_>) -> u8 {
    match cmd {
        JwtProviderCommand::Check(args) => check(&args, io),
    }
}

fn check(args: &CheckArgs, io: &mut Io<'_>) -> u8 {
    let [name] = args.name.as_slice() else {
        let _ = writeln!(
            io.err,
            "Error: command requires exactly one argument: the provider's name"
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
    let token = match super::http::jwt_arg(&args.jwt, &args.jwt_file) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(io.err, "Error: {e}");
            return 1;
        }
    };
    let path = paths::fill(paths::JWT_PROVIDER_CHECK, &[&encode(name)]);
    let (method, body) = match &token {
        None => ("GET", None),
        Some(t) => (
            "POST",
            Some(serde_json::json!({ "Token": t }).to_string().into_bytes()),
        ),
    };
    let r = match call_ok(
        &args.http,
        method,
        &path,
        body,
        "Error checking the provider",
        1,
        io,
    ) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let report: Report = match serde_json::from_str(&r.body) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                io.err,
                "Error checking the provider: the agent's answer is not a check report ({e}): {}",
                r.body.trim()
            );
            return 1;
        }
    };
    let _ = if args.format == "json" {
        writeln!(io.out, "{}", r.body.trim_end())
    } else {
        write!(io.out, "{}", report.render())
    };
    u8::from(!report.ok)
}
