//! `tribune intention check SRC DST`.

use super::http::{call, unexpected, HttpArgs};
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
    let path = format!(
        "/v1/connect/intentions/check?source={}&destination={}",
        encode(src),
        encode(dst)
    );
    match call(&args.http, "GET", &path, None) {
        Err(e) => {
            let _ = writeln!(io.err, "Error connecting to Tribune agent: {e}");
            2
        }
        Ok(r) if r.status != 200 => {
            let _ = writeln!(io.err, "Error checking the connection: {}", unexpected(&r));
            2
        }
        Ok(r) => {
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            if v["Allowed"].as_bool() == Some(true) {
                let _ = writeln!(io.out, "Allowed");
                0
            } else {
                let _ = writeln!(io.out, "Denied");
                1
            }
        }
    }
}
