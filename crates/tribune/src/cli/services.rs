//! `tribune services register|deregister`: the catalog, Consul's way.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::{Args, Subcommand};
use tribune_model::decode::parse_raw;

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// Register a service (and its sidecar) from a definition file (HCL or JSON).
    Register(RegisterArgs),
    /// Deregister a service (and its sidecar) by ID.
    Deregister(DeregisterArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Service definition file: `service { name = "web" ... }` or the bare object.
    pub file: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct DeregisterArgs {
    /// The service ID.
    #[arg(long)]
    pub id: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: ServicesCommand, io: &mut Io<'_>) -> u8 {
    match cmd {
        ServicesCommand::Register(a) => {
            let text = match super::read_file(&a.file) {
                Ok(t) => t,
                Err(e) => {
                    let _ = writeln!(io.err, "{e}");
                    return 1;
                }
            };
            let def = match parse_raw(&text) {
                Ok(m) => serde_json::Value::Object(m),
                Err(e) => {
                    let _ = writeln!(io.err, "Error parsing {}: {e}", a.file);
                    return 1;
                }
            };
            let svc = def
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("service")))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| def.clone());
            let svc = match svc {
                serde_json::Value::Array(mut items) if items.len() == 1 => items.remove(0),
                other => other,
            };
            let name = svc
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("name")))
                .and_then(|(_, v)| v.as_str())
                .unwrap_or("")
                .to_string();
            let body = serde_json::to_vec(&svc).unwrap_or_default();
            match call_ok(
                &a.http,
                "PUT",
                tribune_model::api::paths::AGENT_SERVICE_REGISTER,
                Some(body),
                "Error registering service",
                1,
                io,
            ) {
                Ok(_) => {
                    let _ = writeln!(io.out, "Registered service: {name}");
                    0
                }
                Err(code) => code,
            }
        }
        ServicesCommand::Deregister(a) => {
            match call_ok(
                &a.http,
                "PUT",
                &tribune_model::api::paths::agent_service_deregister(&a.id),
                None,
                "Error deregistering service",
                1,
                io,
            ) {
                Ok(_) => {
                    let _ = writeln!(io.out, "Deregistered service: {}", a.id);
                    0
                }
                Err(code) => code,
            }
        }
    }
}
