//! `tribune login` and `tribune logout` (issue #43), with `consul login`'s and
//! `consul logout`'s flags and messages: exchange a JWT from an identity one already
//! has (a Nomad workload identity, a CI job's token) for an expiring Tribune token,
//! written to a file only its owner can read; and end it.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::Args;
use std::collections::BTreeMap;
use tribune_model::api::paths;
use tribune_model::api::{LoginBody, OidcAuthUrl, OidcAuthUrlBody, OidcCallbackBody};

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
    /// `oidc` to sign in through the method's OpenID provider in a browser (a JWT
    /// method needs no type).
    #[arg(long = "type", default_value = "")]
    pub method_type: String,
    /// Where the browser is sent back to after the sign-in (OIDC only); the method's
    /// AllowedRedirectURIs must allow `http://localhost:<port>/oidc/callback`.
    #[arg(long = "oidc-callback-listen-addr", default_value = "127.0.0.1:8550")]
    pub oidc_callback_listen_addr: String,
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
    let mut meta = BTreeMap::new();
    for kv in &a.meta {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Some(format!("Error parsing -meta: {kv:?} is not key=value")))?;
        meta.insert(k.to_string(), v.to_string());
    }
    match a.method_type.as_str() {
        "" | "jwt" => {}
        "oidc" => return oidc_login(a, meta, io),
        other => {
            return Err(Some(format!(
                "Invalid -type {other:?}: leave it out for a JWT method, or use oidc"
            )))
        }
    }
    if a.bearer_token_file.is_empty() {
        return Err(Some("Missing required '-bearer-token-file' flag".into()));
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
    let body = LoginBody {
        auth_method: a.method.clone(),
        bearer_token: bearer,
        meta,
    };
    // A login presents no token of its own (the environment's is not sent).
    let http = HttpArgs {
        token: Some(String::new()),
        token_file: None,
        ..a.http.clone()
    };
    let r = call_ok(
        &http,
        "POST",
        paths::ACL_LOGIN,
        serde_json::to_vec(&body).ok(),
        "Error logging in",
        1,
        io,
    )
    .map_err(|_| None)?;
    sink(&a.token_sink_file, &r.body)
}

/// Writes the SecretID of a token answer to the sink file (0600).
fn sink(path: &str, answer: &str) -> Result<(), Option<String>> {
    let token: tribune_model::api::Indexed<tribune_model::api::AclToken> =
        serde_json::from_str(answer)
            .map_err(|e| Some(format!("Unexpected answer from the agent: {e}")))?;
    super::snapshot::write_private(std::path::Path::new(path), token.item.secret_id.as_bytes())
        .map_err(|e| Some(format!("Error writing token to file sink {path:?}: {e}")))?;
    Ok(())
}

/// How long `login -type oidc` waits for the browser to come back.
const OIDC_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The page the browser lands on after the sign-in.
const SIGNED_IN_PAGE: &str = "<!doctype html><title>Tribune</title><p>Signed in to Tribune. You can close this window and return to the terminal.</p>";

/// `tribune login -type oidc`: an auth URL for a loopback redirect, the browser's
/// return taken on a local listener, the code exchanged by the agent.
fn oidc_login(
    a: &LoginArgs,
    meta: BTreeMap<String, String>,
    io: &mut Io<'_>,
) -> Result<(), Option<String>> {
    let listener = std::net::TcpListener::bind(&a.oidc_callback_listen_addr).map_err(|e| {
        Some(format!(
            "Error starting the callback listener on {}: {e}",
            a.oidc_callback_listen_addr
        ))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| Some(e.to_string()))?
        .port();
    let redirect = format!("http://localhost:{port}/oidc/callback");
    let client_nonce = random_hex();
    let http = HttpArgs {
        token: Some(String::new()),
        token_file: None,
        ..a.http.clone()
    };
    let body = OidcAuthUrlBody {
        auth_method: a.method.clone(),
        redirect_uri: redirect,
        client_nonce: client_nonce.clone(),
        meta,
    };
    let r = call_ok(
        &http,
        "POST",
        paths::ACL_OIDC_AUTH_URL,
        serde_json::to_vec(&body).ok(),
        "Error fetching AuthURL from Tribune",
        1,
        io,
    )
    .map_err(|_| None)?;
    let url = serde_json::from_str::<OidcAuthUrl>(&r.body)
        .map(|a| a.auth_url)
        .map_err(|e| Some(format!("Unexpected answer from the agent: {e}")))?;
    let _ = writeln!(
        io.out,
        "Complete the login via your OIDC provider. Open this URL in your browser:\n\n    {url}\n"
    );
    let _ = io.out.flush();
    let (code, state) = wait_for_callback(&listener)?;
    let body = OidcCallbackBody {
        auth_method: a.method.clone(),
        state,
        code,
        client_nonce,
    };
    let r = call_ok(
        &http,
        "POST",
        paths::ACL_OIDC_CALLBACK,
        serde_json::to_vec(&body).ok(),
        "Error exchanging the OIDC code",
        1,
        io,
    )
    .map_err(|_| None)?;
    sink(&a.token_sink_file, &r.body)
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    // A failure leaves zeros: the nonce then only fails to add its protection.
    let _ = aws_lc_rs::rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Waits (bounded) for the browser's `GET /oidc/callback?code=..&state=..`; answers
/// it with a page, and anything else with 404.
fn wait_for_callback(listener: &std::net::TcpListener) -> Result<(String, String), Option<String>> {
    use std::io::{Read, Write as _};
    let deadline = std::time::Instant::now() + OIDC_WAIT;
    listener
        .set_nonblocking(true)
        .map_err(|e| Some(e.to_string()))?;
    loop {
        if std::time::Instant::now() > deadline {
            return Err(Some(format!(
                "Timed out after {} s waiting for the browser to return from the OIDC provider",
                OIDC_WAIT.as_secs()
            )));
        }
        let mut conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(Some(format!("Error accepting the callback: {e}"))),
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
        let mut buf = vec![0u8; 16 * 1024];
        let mut n = 0;
        while n < buf.len() {
            match conn.read(&mut buf[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    n += k;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head.split_whitespace().nth(1).unwrap_or("");
        let Some(query) = target.strip_prefix("/oidc/callback?") else {
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            continue;
        };
        let q: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let page = if q.contains_key("error") {
            "<!doctype html><title>Tribune</title><p>The OIDC provider refused the sign-in.</p>"
        } else {
            SIGNED_IN_PAGE
        };
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\nreferrer-policy: no-referrer\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            )
            .as_bytes(),
        );
        if let Some(e) = q.get("error") {
            let why = q.get("error_description").map_or("", String::as_str);
            return Err(Some(format!(
                "The OIDC provider refused the sign-in: {e} {why}"
            )));
        }
        match (q.get("code"), q.get("state")) {
            (Some(c), Some(s)) => return Ok((c.clone(), s.clone())),
            _ => return Err(Some("The OIDC callback carried no code or state".into())),
        }
    }
}

pub fn logout(a: &LogoutArgs, io: &mut Io<'_>) -> u8 {
    match call_ok(
        &a.http,
        "POST",
        paths::ACL_LOGOUT,
        None,
        "Error destroying token",
        1,
        io,
    ) {
        Ok(_) => 0,
        Err(code) => code,
    }
}
