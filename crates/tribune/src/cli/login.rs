//! `tribune login` and `tribune logout` (issue #43), with `consul login`'s and
//! `consul logout`'s flags and messages: exchange a JWT from an identity one already
//! has (a Nomad workload identity, a CI job's token) for an expiring Tribune token,
//! written to a file only its owner can read; and end it.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::Args;
use std::collections::BTreeMap;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The auth method to log in with.
    #[arg(long, default_value = "")]
    pub method: String,
    /// File holding the JWT to present (read and trimmed; never printed).
    #[arg(long = "bearer-token-file", default_value = "")]
    pub bearer_token_file: String,
    /// File the new token's SecretID is written to (mode 0600).
    #[arg(long = "token-sink-file", default_value = "")]
    pub token_sink_file: String,
    /// Metadata for the new token's description, as key=value (repeatable).
    #[arg(long)]
    pub meta: Vec<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The token to end is the request's token (-token, -token-file or the
    /// environment), which a login must have made.
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn login(a: &LoginArgs, io: &mut Io<'_>) -> u8 {
    match try_login(a, io) {
        Ok(()) => 0,
        Err(Some(m)) => {
            let _ = writeln!(io.err, "{m}");
            1
        }
        Err(None) => 1,
    }
}

fn try_login(a: &LoginArgs, io: &mut Io<'_>) -> Result<(), Option<String>> {
    if a.method.is_empty() {
        return Err(Some("Missing required '-method' flag".into()));
    }
    if a.token_sink_file.is_empty() {
        return Err(Some("Missing required '-token-sink-file' flag".into()));
    }
    if a.bearer_token_file.is_empty() {
        return Err(Some("Missing required '-bearer-token-file' flag".into()));
    }
    let mut meta = BTreeMap::new();
    for kv in &a.meta {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Some(format!("Error parsing -meta: {kv:?} is not key=value")))?;
        meta.insert(k.to_string(), v.to_string());
    }
    let bearer = super::read_file(&a.bearer_token_file)
        .map_err(|e| Some(format!("Error reading bearer token file: {e}")))?
        .trim()
        .to_string();
    if bearer.is_empty() {
        return Err(Some(format!(
            "No bearer token found in {}",
            a.bearer_token_file
        )));
    }
    let body = serde_json::json!({"AuthMethod": a.method, "BearerToken": bearer, "Meta": meta});
    // A login presents no token of its own (the environment's is not sent).
    let http = HttpArgs {
        token: Some(String::new()),
        token_file: None,
        ..a.http.clone()
    };
    let r = call_ok(
        &http,
        "POST",
        "/v1/acl/login",
        serde_json::to_vec(&body).ok(),
        "Error logging in",
        1,
        io,
    )
    .map_err(|_| None)?;
    let token: tribune_model::api::Indexed<tribune_model::api::AclToken> =
        serde_json::from_str(&r.body)
            .map_err(|e| Some(format!("Unexpected answer from the agent: {e}")))?;
    super::snapshot::write_private(
        std::path::Path::new(&a.token_sink_file),
        token.item.secret_id.as_bytes(),
    )
    .map_err(|e| {
        Some(format!(
            "Error writing token to file sink {:?}: {e}",
            a.token_sink_file
        ))
    })?;
    Ok(())
}

pub fn logout(a: &LogoutArgs, io: &mut Io<'_>) -> u8 {
    match call_ok(
        &a.http,
        "POST",
        "/v1/acl/logout",
        None,
        "Error destroying token",
        1,
        io,
    ) {
        Ok(_) => 0,
        Err(code) => code,
    }
}
