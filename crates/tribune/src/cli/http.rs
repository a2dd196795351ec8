//! Flags and environment shared by every command that talks to the agent.

use clap::Args;
use tribune_client::{Client, ClientError, Response, Target, TlsOptions};

#[derive(Debug, Args, Clone, Default)]
pub struct HttpArgs {
    /// Agent address (env TRIBUNE_HTTP_ADDR or CONSUL_HTTP_ADDR; default 127.0.0.1:8500);
    /// several, comma-separated, are failed over in order.
    #[arg(long = "http-addr")]
    pub http_addr: Option<String>,
    /// ACL token (env TRIBUNE_HTTP_TOKEN or CONSUL_HTTP_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// File holding the ACL token (env TRIBUNE_HTTP_TOKEN_FILE or CONSUL_HTTP_TOKEN_FILE).
    #[arg(long = "token-file")]
    pub token_file: Option<String>,
    /// CA certificate (PEM) an https:// agent's certificate must chain to (env
    /// TRIBUNE_CACERT or CONSUL_CACERT; default: the system's roots).
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_file: Option<String>,
    /// A directory of CA certificates (env TRIBUNE_CAPATH or CONSUL_CAPATH).
    #[arg(long = "ca-path", value_name = "DIR")]
    pub ca_path: Option<String>,
    /// Client certificate (PEM) for an agent with verify_incoming (env
    /// TRIBUNE_CLIENT_CERT or CONSUL_CLIENT_CERT).
    #[arg(long = "client-cert", value_name = "FILE")]
    pub client_cert: Option<String>,
    /// The client certificate's private key (env TRIBUNE_CLIENT_KEY or
    /// CONSUL_CLIENT_KEY).
    #[arg(long = "client-key", value_name = "FILE")]
    pub client_key: Option<String>,
    /// The name the agent's certificate must carry, if not the address's host (env
    /// TRIBUNE_TLS_SERVER_NAME or CONSUL_TLS_SERVER_NAME).
    #[arg(long = "tls-server-name", value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

impl HttpArgs {
    /// Flags win over `TRIBUNE_*`, which win over `CONSUL_*`. `CONSUL_HTTP_SSL=true`
    /// (or `TRIBUNE_HTTP_SSL`) makes an address without a scheme `https://`.
    pub fn target(&self) -> Result<Target, String> {
        let mut addr = self
            .http_addr
            .clone()
            .or_else(|| env(&["TRIBUNE_HTTP_ADDR", "CONSUL_HTTP_ADDR"]))
            .unwrap_or_else(|| "127.0.0.1:8500".into());
        let ssl = env(&["TRIBUNE_HTTP_SSL", "CONSUL_HTTP_SSL"]);
        if let Some(v) = ssl {
            let on = match v.to_ascii_lowercase().as_str() {
                "1" | "t" | "true" => true,
                "0" | "f" | "false" => false,
                other => {
                    return Err(format!(
                        "CONSUL_HTTP_SSL: expected true or false, got {other:?}"
                    ))
                }
            };
            if on {
                addr = addr
                    .split(',')
                    .map(|a| {
                        let a = a.trim();
                        if a.contains("://") || a.is_empty() {
                            a.to_string()
                        } else {
                            format!("https://{a}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",");
            }
        }
        let token_file = self
            .token_file
            .clone()
            .or_else(|| env(&["TRIBUNE_HTTP_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE"]));
        let token = match (&self.token, token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(super::read_file(&f)?.trim().to_string()),
            (None, None) => env(&["TRIBUNE_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"]),
        };
        let pick = |flag: &Option<String>, names: &[&str]| {
            flag.clone().or_else(|| env(names)).map(Into::into)
        };
        let tls = TlsOptions {
            ca_file: pick(&self.ca_file, &["TRIBUNE_CACERT", "CONSUL_CACERT"]),
            ca_path: pick(&self.ca_path, &["TRIBUNE_CAPATH", "CONSUL_CAPATH"]),
            client_cert: pick(
                &self.client_cert,
                &["TRIBUNE_CLIENT_CERT", "CONSUL_CLIENT_CERT"],
            ),
            client_key: pick(
                &self.client_key,
                &["TRIBUNE_CLIENT_KEY", "CONSUL_CLIENT_KEY"],
            ),
            server_name: self
                .tls_server_name
                .clone()
                .or_else(|| env(&["TRIBUNE_TLS_SERVER_NAME", "CONSUL_TLS_SERVER_NAME"])),
        };
        Ok(Target { addr, token, tls })
    }
}

/// Runs one request to the agent on a small runtime.
pub fn call(
    http: &HttpArgs,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Response, ClientError> {
    let target = http.target().map_err(ClientError)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError(e.to_string()))?;
    rt.block_on(async {
        let client = Client::new(&target)?;
        client.request(method, path, body).await
    })
}

/// What to do about a failed connection, when the error says enough to tell.
pub fn connection_hint(error: &str) -> Option<&'static str> {
    if error.contains("Connection refused") {
        Some("Is `tribune agent` running there? Pass -http-addr (or set CONSUL_HTTP_ADDR) to reach another address.")
    } else if error.contains("InvalidContentType") || error.contains("invalid HTTP version") {
        Some("The agent and this client speak different protocols: use an https:// address for an HTTPS port, http:// for an HTTP one.")
    } else if error.contains("invalid peer certificate") {
        Some("The agent's certificate was not accepted: pass its CA with -ca-file (or CONSUL_CACERT), and -tls-server-name when the address is not a name in the certificate.")
    } else if error.contains("CertificateRequired") {
        Some("The agent requires a client certificate (verify_incoming): pass -client-cert and -client-key (or CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY).")
    } else {
        None
    }
}

/// Consul's text for a non-200 answer.
pub fn unexpected(r: &Response) -> String {
    format!(
        "Unexpected response code: {} ({})",
        r.status,
        r.body.trim_end()
    )
}

/// Calls the agent and returns a 200 response. A connection failure, or any other
/// status (reported as `<failure>: Unexpected response code: ...`, Consul's wording),
/// is printed to stderr and becomes exit code `code`.
pub fn call_ok(
    http: &HttpArgs,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    failure: &str,
    code: u8,
    io: &mut super::Io<'_>,
) -> Result<Response, u8> {
    match call(http, method, path, body) {
        Err(e) => {
            let _ = writeln!(io.err, "Error connecting to Tribune agent: {e}");
            if let Some(hint) = connection_hint(&e.0) {
                let _ = writeln!(io.err, "{hint}");
            }
            Err(code)
        }
        Ok(r) if r.status != 200 => {
            let _ = writeln!(io.err, "{failure}: {}", unexpected(&r));
            Err(code)
        }
        Ok(r) => Ok(r),
    }
}

/// The request token of `-jwt T` or `-jwt-file F` (trimmed; at most one of them).
pub fn jwt_arg(jwt: &Option<String>, jwt_file: &Option<String>) -> Result<Option<String>, String> {
    match (jwt, jwt_file) {
        (Some(_), Some(_)) => Err("-jwt and -jwt-file cannot be used together".into()),
        (Some(t), None) => Ok(Some(t.trim().to_string())),
        (None, Some(f)) => super::read_file(f).map(|t| Some(t.trim().to_string())),
        (None, None) => Ok(None),
    }
}
