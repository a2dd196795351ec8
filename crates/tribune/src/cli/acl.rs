//! `tribune acl ...`: bootstrap, policies, tokens.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Create the first management token (once).
    Bootstrap(BootstrapArgs),
    /// ACL policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// ACL tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy from rules (`-rules @file` reads a file).
    Create(PolicyCreateArgs),
}

#[derive(Debug, Args)]
pub struct PolicyCreateArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Rules text, `@file`, or `-` for stdin.
    #[arg(long)]
    pub rules: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token linked to policies.
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[arg(long = "policy-name")]
    pub policy_name: Vec<String>,
    #[arg(long = "policy-id")]
    pub policy_id: Vec<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: AclCommand, io: &mut Io<'_>) -> u8 {
    match cmd {
        AclCommand::Bootstrap(a) => bootstrap(&a, io),
        AclCommand::Policy(PolicyCommand::Create(a)) => policy_create(&a, io),
        AclCommand::Token(TokenCommand::Create(a)) => token_create(&a, io),
    }
}

fn print_token(v: &Value, io: &mut Io<'_>) {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let _ = writeln!(io.out, "AccessorID:       {}", s("AccessorID"));
    let _ = writeln!(io.out, "SecretID:         {}", s("SecretID"));
    let _ = writeln!(io.out, "Description:      {}", s("Description"));
    let _ = writeln!(
        io.out,
        "Local:            {}",
        v["Local"].as_bool().unwrap_or(false)
    );
    let _ = writeln!(io.out, "Create Time:      {}", s("CreateTime"));
    let _ = writeln!(io.out, "Policies:");
    for p in v["Policies"].as_array().into_iter().flatten() {
        let _ = writeln!(
            io.out,
            "   {} - {}",
            p["ID"].as_str().unwrap_or(""),
            p["Name"].as_str().unwrap_or("")
        );
    }
}

fn send(
    http: &HttpArgs,
    method: &str,
    path: &str,
    body: Option<Value>,
    what: &str,
    io: &mut Io<'_>,
) -> Result<Value, u8> {
    let r = call_ok(
        http,
        method,
        path,
        body.map(|b| b.to_string().into_bytes()),
        &format!("Failed to {what}"),
        1,
        io,
    )?;
    Ok(serde_json::from_str(&r.body).unwrap_or_default())
}

fn bootstrap(a: &BootstrapArgs, io: &mut Io<'_>) -> u8 {
    match send(
        &a.http,
        "PUT",
        "/v1/acl/bootstrap",
        None,
        "bootstrap ACLs",
        io,
    ) {
        Ok(v) => {
            print_token(&v, io);
            0
        }
        Err(c) => c,
    }
}

fn policy_create(a: &PolicyCreateArgs, io: &mut Io<'_>) -> u8 {
    let rules = match a.rules.strip_prefix('@') {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(io.err, "Failed to read rules from {f}: {e}");
                return 1;
            }
        },
        None if a.rules == "-" => match super::config::load_input("-") {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(io.err, "{e}");
                return 1;
            }
        },
        None => a.rules.clone(),
    };
    let body = json!({"Name": a.name, "Description": a.description, "Rules": rules});
    match send(
        &a.http,
        "PUT",
        "/v1/acl/policy",
        Some(body),
        "create new policy",
        io,
    ) {
        Ok(v) => {
            let _ = writeln!(io.out, "ID:           {}", v["ID"].as_str().unwrap_or(""));
            let _ = writeln!(io.out, "Name:         {}", v["Name"].as_str().unwrap_or(""));
            let _ = writeln!(
                io.out,
                "Description:  {}",
                v["Description"].as_str().unwrap_or("")
            );
            let _ = writeln!(io.out, "Rules:\n{}", v["Rules"].as_str().unwrap_or(""));
            0
        }
        Err(c) => c,
    }
}

fn token_create(a: &TokenCreateArgs, io: &mut Io<'_>) -> u8 {
    let mut policies: Vec<Value> = a.policy_name.iter().map(|n| json!({"Name": n})).collect();
    policies.extend(a.policy_id.iter().map(|i| json!({"ID": i})));
    let body = json!({"Description": a.description, "Policies": policies});
    match send(
        &a.http,
        "PUT",
        "/v1/acl/token",
        Some(body),
        "create new token",
        io,
    ) {
        Ok(v) => {
            print_token(&v, io);
            0
        }
        Err(c) => c,
    }
}
