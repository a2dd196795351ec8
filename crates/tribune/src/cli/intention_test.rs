//! `tribune intention test FILE...`: policy tests for intentions, like `opa test`.
//!
//! A case file (HCL or JSON) holds `Test "name" { ... }` blocks:
//!
//! ```hcl
//! Test "admin reads items" {
//!   Source      = "web"              # omit for a caller outside the mesh (edge)
//!   Destination = "api"
//!   Method      = "GET"
//!   Path        = "/v1/items"
//!   Headers     = { "x-env" = "prod" }
//!   JWT { Provider = "okta"  Claims = { perms = { role = "admin" } } }
//!   Expect      = "allow"            # "allow", "deny", or an HTTP status (401, 403)
//! }
//! ```
//!
//! `JWT {}` puts a token of that provider at its first location and takes it as
//! verified with those claims (a described token is addressed only to its provider);
//! `Token = "<compact JWS>"` is verified for real, with the provider's keys. Cases
//! run against the policy each destination's sidecar is served (the agent's snapshot
//! endpoint; the token needs `service:write` on the destinations, as a sidecar's does)
//! or, with `-entries PATH` (repeatable), against entry files (a file, or a
//! directory's `*.hcl` and `*.json`, not `*.test.hcl` / `*.test.json`, which are case
//! files) decoded and cross-checked as `config write` does. Either way they are evaluated by the enforcement engine the
//! sidecar runs, so a passing test means the sidecar decides the same.

use super::http::HttpArgs;
use super::Io;
use clap::Args;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use tribune_authz::Action;
use tribune_enforce::explain::{explain, ExplainRequest, ExplainResponse};
use tribune_enforce::{cross_checks, Options, Policy, PolicyDocument, Verify};
use tribune_jwks::{Registry, Runtimes};
use tribune_jwt::JwtError;
use tribune_model::jwt_provider::JwtLocation;
use tribune_model::ConfigEntry;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Case files (HCL or JSON) with `Test "name" { ... }` blocks.
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Run offline against entry files (HCL or JSON) instead of the agent's live
    /// entries: a file, or a directory (its `*.hcl` and `*.json`, not `*.test.*`);
    /// repeatable.
    #[arg(long)]
    pub entries: Vec<String>,
    /// With -entries: the agent's default intention policy (`allow` or `deny`).
    #[arg(long = "default-policy", default_value = "deny")]
    pub default_policy: String,
    /// Output: `text` (failing cases, then a summary) or `junit` (XML for CI).
    #[arg(long, default_value = "text")]
    pub format: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// One described token: taken as verified, with these claims.
#[derive(Debug, Clone, Deserialize)]
struct CaseJwt {
    #[serde(rename = "Provider")]
    provider: String,
    #[serde(rename = "Claims", default)]
    claims: Option<Value>,
}

/// One `Test` block.
#[derive(Debug, Clone, Default, Deserialize)]
struct Case {
    #[serde(rename = "Source", default)]
    source: Option<String>,
    #[serde(rename = "Destination", default)]
    destination: String,
    #[serde(rename = "Method", default)]
    method: Option<String>,
    #[serde(rename = "Path", default)]
    path: Option<String>,
    #[serde(rename = "Headers", default)]
    headers: BTreeMap<String, Vec<String>>,
    #[serde(rename = "Cookies", default)]
    cookies: Vec<String>,
    #[serde(rename = "JWT", default)]
    jwt: Vec<CaseJwt>,
    #[serde(rename = "Token", default)]
    token: Option<String>,
    #[serde(rename = "MergeSlashes", default)]
    merge_slashes: bool,
    #[serde(rename = "Expect", default)]
    expect: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    Deny,
    Status(u16),
}

impl Expect {
    fn parse(s: &str) -> Result<Expect, String> {
        match s {
            "allow" => Ok(Expect::Allow),
            "deny" => Ok(Expect::Deny),
            _ => match s.parse::<u16>() {
                Ok(n) if (100..600).contains(&n) => Ok(Expect::Status(n)),
                _ => Err(format!(
                    "Expect: must be \"allow\", \"deny\" or an HTTP status, got {s:?}"
                )),
            },
        }
    }

    fn met_by(self, a: &ExplainResponse) -> bool {
        match self {
            Expect::Allow => a.allowed,
            Expect::Deny => !a.allowed,
            Expect::Status(n) => a.status == Some(n),
        }
    }

    fn text(self) -> String {
        match self {
            Expect::Allow => "allow".into(),
            Expect::Deny => "deny".into(),
            Expect::Status(n) => format!("HTTP {n}"),
        }
    }
}

/// A case, checked.
struct Loaded {
    file: String,
    name: String,
    case: Case,
    expect: Expect,
}

/// A decode error on one line (every field problem, joined).
fn flat(e: &tribune_model::DecodeError) -> String {
    match e {
        tribune_model::DecodeError::Fields(list) => list.join("; "),
        other => other.to_string(),
    }
}

/// Reads every case of `path`; problems are reported with the file and test name.
fn load_cases(path: &str, out: &mut Vec<Loaded>, errors: &mut Vec<String>) {
    let text = match super::read_file(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(e);
            return;
        }
    };
    let raw = match tribune_model::decode::parse_raw(&text) {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("{path}: {}", flat(&e)));
            return;
        }
    };
    let mut blocks: Vec<(String, &Value)> = Vec::new();
    for (key, value) in &raw {
        if !key.eq_ignore_ascii_case("test") {
            errors.push(format!(
                "{path}: unknown key {key:?} (a case file holds Test \"name\" {{ ... }} blocks)"
            ));
            continue;
        }
        // HCL1 collects repeated `Test` keys into a list of {name: case} objects.
        let groups: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        for g in groups {
            match g {
                Value::Object(m) => blocks.extend(m.iter().map(|(n, v)| (n.clone(), v))),
                _ => errors.push(format!("{path}: Test must be a block with a name")),
            }
        }
    }
    if blocks.is_empty() && errors.is_empty() {
        errors.push(format!("{path}: no Test blocks"));
    }
    for (name, v) in blocks {
        // A repeated test name collects its blocks into a list.
        let bodies: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        for body in bodies {
            let case: Case = match tribune_model::decode::from_value(body, &format!("Test.{name}"))
            {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{path}: Test {name:?}: {}", flat(&e)));
                    continue;
                }
            };
            let mut problems = Vec::new();
            if case.destination.is_empty() {
                problems.push("Destination: required".to_string());
            }
            if case.token.is_some() && !case.jwt.is_empty() {
                problems.push("give Token or JWT, not both".to_string());
            }
            let expect = match case.expect.as_deref() {
                None => {
                    problems.push("Expect: required".to_string());
                    None
                }
                Some(s) => Expect::parse(s).map_err(|e| problems.push(e)).ok(),
            };
            match expect {
                Some(expect) if problems.is_empty() => out.push(Loaded {
                    file: path.to_string(),
                    name: name.clone(),
                    case,
                    expect,
                }),
                _ => errors.push(format!("{path}: Test {name:?}: {}", problems.join("; "))),
            }
        }
    }
}

/// The entry files named by `paths` (files, or directories: their `*.hcl` and
/// `*.json` except case files), decoded as `config write` decodes them, then
/// cross-checked in an order that lets references resolve (defaults and providers
/// first).
fn load_entries(paths: &[String]) -> Result<Vec<ConfigEntry>, Vec<String>> {
    let mut errors = Vec::new();
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for path in paths {
        let p = std::path::Path::new(path);
        if !p.is_dir() {
            files.push(p.to_path_buf());
            continue;
        }
        let listing = match std::fs::read_dir(p) {
            Ok(l) => l,
            Err(e) => {
                errors.push(format!("Failed to read directory {path:?}: {e}"));
                continue;
            }
        };
        let mut found: Vec<std::path::PathBuf> = listing
            .filter_map(|d| d.ok().map(|d| d.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                // Case files may sit beside the entries they test: `*.test.hcl`.
                p.is_file()
                    && (name.ends_with(".hcl") || name.ends_with(".json"))
                    && !name.ends_with(".test.hcl")
                    && !name.ends_with(".test.json")
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    let mut entries: Vec<ConfigEntry> = Vec::new();
    for f in &files {
        let shown = f.display().to_string();
        let text = match super::read_file(f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let entry = match tribune_model::decode_text(&text) {
            Err(e) => {
                errors.push(format!(
                    "{shown}: Failed to decode config entry input: {}",
                    flat(&e)
                ));
                continue;
            }
            Ok(w) => match w.into_entry() {
                Ok(e) => e,
                Err(v) => {
                    let list: Vec<String> = v.0.iter().map(|e| e.with_path()).collect();
                    errors.push(format!("{shown}: invalid: {}", list.join("; ")));
                    continue;
                }
            },
        };
        if entries
            .iter()
            .any(|e| e.kind() == entry.kind() && e.name() == entry.name())
        {
            errors.push(format!(
                "{shown}: {}/{} is defined by another file too",
                entry.kind(),
                entry.name()
            ));
            continue;
        }
        entries.push(entry);
    }
    let rank = |e: &ConfigEntry| match e {
        ConfigEntry::ProxyDefaults(_) => 0,
        ConfigEntry::ServiceDefaults(_) => 1,
        ConfigEntry::Mesh(_) => 2,
        ConfigEntry::JwtProvider(_) => 3,
        ConfigEntry::ServiceIntentions(_) => 4,
    };
    entries.sort_by_key(rank);
    let mut accepted: Vec<ConfigEntry> = Vec::new();
    for e in entries {
        let current: Vec<&ConfigEntry> = accepted.iter().collect();
        match cross_checks(&current, Some(&e), None) {
            Ok(()) => accepted.push(e),
            Err(why) => errors.push(format!("{}/{}: {why}", e.kind(), e.name())),
        }
    }
    if errors.is_empty() {
        Ok(accepted)
    } else {
        Err(errors)
    }
}

/// Verifies with the real key runtimes, except the described tokens of the case,
/// which are taken as verified with their claims.
struct CaseKeys<'a> {
    real: Runtimes<'a>,
    /// (provider index, token, claims).
    described: Vec<(usize, String, Arc<tribune_jwt::Claims>)>,
}

impl Verify for CaseKeys<'_> {
    fn check(
        &self,
        provider: usize,
        token: &str,
        now: i64,
    ) -> impl Future<Output = Option<Result<Arc<tribune_jwt::Claims>, JwtError>>> + Send {
        let hit = self
            .described
            .iter()
            .find(|(_, t, _)| t == token)
            .map(|(p, _, c)| (*p, c.clone()));
        let real = self.real;
        let token = token.to_string();
        async move {
            match hit {
                Some((p, claims)) if p == provider => Some(Ok(claims)),
                // Described for another provider: not addressed to this one.
                Some(_) => None,
                None => real.check(provider, &token, now).await,
            }
        }
    }
}

/// The explain request of a case, and its described tokens placed at the first
/// location of their provider.
fn describe(
    policy: &Policy,
    number: usize,
    case: &Case,
) -> (
    ExplainRequest,
    Vec<(usize, String, Arc<tribune_jwt::Claims>)>,
) {
    let mut req = ExplainRequest {
        source: case.source.clone(),
        destination: case.destination.clone(),
        method: case.method.clone(),
        path: case.path.clone(),
        headers: case.headers.clone(),
        cookies: case.cookies.clone(),
        token: case.token.clone(),
        merge_slashes: case.merge_slashes,
    };
    let mut described = Vec::new();
    for (j, jwt) in case.jwt.iter().enumerate() {
        let token = format!("tribune-test-token.{number}.{j}");
        let index = policy.providers.iter().position(|p| p.name == jwt.provider);
        let mut claims = match &jwt.claims {
            Some(Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        };
        let location = index.and_then(|i| {
            let p = &policy.providers[i];
            if !p.issuer.is_empty() && !claims.contains_key("iss") {
                claims.insert("iss".into(), Value::from(p.issuer.clone()));
            }
            tribune_jwt::locate::locations(p).first().cloned()
        });
        match location {
            Some(JwtLocation::Header(h)) => req
                .headers
                .entry(h.name.clone())
                .or_default()
                .push(format!("{}{token}", h.value_prefix)),
            Some(JwtLocation::QueryParam(q)) => {
                let target = req.path.get_or_insert_with(|| "/".into());
                let sep = if target.contains('?') { '&' } else { '?' };
                target.push_str(&format!("{sep}{}={token}", q.name));
            }
            Some(JwtLocation::Cookie(c)) => req.cookies.push(format!("{}={token}", c.name)),
            // Not referenced by the destination's intentions: the sidecar would not
            // look at it; it is sent where tokens usually are.
            None => req
                .headers
                .entry("Authorization".into())
                .or_default()
                .push(format!("Bearer {token}")),
        }
        if let Some(i) = index {
            described.push((
                i,
                token,
                Arc::new(tribune_jwt::Claims::from_object(&claims)),
            ));
        }
    }
    (req, described)
}

/// A destination's policy and the key runtimes of its providers.
type Compiled = (Policy, Vec<Arc<tribune_jwks::ProviderRuntime>>);

struct Outcome {
    loaded: Loaded,
    /// The answer, or why the case could not run.
    answer: Result<ExplainResponse, String>,
}

impl Outcome {
    fn passed(&self) -> bool {
        matches!(&self.answer, Ok(a) if self.loaded.expect.met_by(a))
    }

    fn failure(&self) -> String {
        match &self.answer {
            Err(e) => format!("error: {e}"),
            Ok(a) => {
                let got = match a.status {
                    Some(s) => format!("{} (HTTP {s})", a.decision),
                    None => a.decision.clone(),
                };
                format!(
                    "expected {}, got {got}: {} [{}]",
                    self.loaded.expect.text(),
                    a.reason,
                    a.reason_code
                )
            }
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The document each destination's sidecar enforces.
async fn documents(
    args: &TestArgs,
    destinations: &[String],
) -> Result<HashMap<String, PolicyDocument>, Vec<String>> {
    let mut docs = HashMap::new();
    if !args.entries.is_empty() {
        let default = Action::parse(&args.default_policy).ok_or_else(|| {
            vec![format!(
                "-default-policy must be \"allow\" or \"deny\", got {:?}",
                args.default_policy
            )]
        })?;
        let entries = load_entries(&args.entries)?;
        let refs: Vec<&ConfigEntry> = entries.iter().collect();
        for d in destinations {
            docs.insert(d.clone(), PolicyDocument::from_entries(d, default, &refs));
        }
        return Ok(docs);
    }
    let target = args.http.target().map_err(|e| vec![e])?;
    let client = tribune_client::Client::new(&target).map_err(|e| vec![e.to_string()])?;
    let mut errors = Vec::new();
    for d in destinations {
        let path = tribune_model::api::paths::proxy_snapshot(&tribune_client::encode(d));
        match client.request("GET", &path, None).await {
            Err(e) => errors.push(format!("Error connecting to Tribune agent: {e}")),
            Ok(r) if r.status != 200 => errors.push(format!(
                "Error reading the policy of {d:?}: {}",
                super::http::unexpected(&r)
            )),
            Ok(r) => match tribune_model::decode::parse_json(r.body.as_bytes())
                .map_err(|e| e.to_string())
                .and_then(|v| PolicyDocument::from_json(&v))
            {
                Ok(doc) => {
                    docs.insert(d.clone(), doc);
                }
                Err(e) => errors.push(format!("The agent's policy of {d:?} is unusable: {e}")),
            },
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

async fn run_cases(args: &TestArgs, cases: Vec<Loaded>) -> Result<Vec<Outcome>, Vec<String>> {
    let mut destinations: Vec<String> = cases.iter().map(|c| c.case.destination.clone()).collect();
    destinations.sort();
    destinations.dedup();
    let docs = documents(args, &destinations).await?;
    let real_tokens = cases.iter().any(|c| c.case.token.is_some());
    let registry = Registry::default();
    let mut compiled: HashMap<String, Result<Compiled, String>> = HashMap::new();
    for (d, doc) in docs {
        let built = match Policy::compile(&doc) {
            Err(e) => Err(e),
            Ok(policy) => match registry.runtimes(&policy.providers) {
                Err(e) => Err(e),
                Ok((runtimes, fresh)) => {
                    // Keys are fetched (as a sidecar fetches them) only when a case has
                    // a real token; described tokens need none.
                    if real_tokens {
                        for rt in &fresh {
                            rt.prepare().await;
                        }
                    }
                    Ok((policy, runtimes))
                }
            },
        };
        compiled.insert(d, built);
    }
    let mut out = Vec::with_capacity(cases.len());
    for (number, loaded) in cases.into_iter().enumerate() {
        let answer = match compiled.get(&loaded.case.destination) {
            None => Err(format!("no policy for {:?}", loaded.case.destination)),
            Some(Err(e)) => Err(format!(
                "the policy of {:?} does not compile: {e}",
                loaded.case.destination
            )),
            Some(Ok((policy, runtimes))) => {
                let (req, described) = describe(policy, number, &loaded.case);
                match req.describe() {
                    Err(e) => Err(e),
                    Ok(d) => {
                        let keys = CaseKeys {
                            real: Runtimes(runtimes),
                            described,
                        };
                        let options = Options {
                            merge_slashes: req.merge_slashes,
                        };
                        Ok(explain(policy, &d, options, now(), &keys).await)
                    }
                }
            }
        };
        out.push(Outcome { loaded, answer });
    }
    Ok(out)
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn junit(outcomes: &[Outcome], io: &mut Io<'_>) {
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let _ = writeln!(io.out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        io.out,
        "<testsuites name=\"tribune intention test\" tests=\"{}\" failures=\"{failed}\">",
        outcomes.len()
    );
    let mut files: Vec<&str> = outcomes.iter().map(|o| o.loaded.file.as_str()).collect();
    files.dedup();
    for file in files {
        let mine: Vec<&Outcome> = outcomes.iter().filter(|o| o.loaded.file == file).collect();
        let f = mine.iter().filter(|o| !o.passed()).count();
        let _ = writeln!(
            io.out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\">",
            xml(file),
            mine.len()
        );
        for o in mine {
            let _ = write!(
                io.out,
                "    <testcase name=\"{}\" classname=\"{}\"",
                xml(&o.loaded.name),
                xml(file)
            );
            if o.passed() {
                let _ = writeln!(io.out, "/>");
            } else {
                let why = o.failure();
                let _ = writeln!(
                    io.out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    xml(&why),
                    xml(&why)
                );
            }
        }
        let _ = writeln!(io.out, "  </testsuite>");
    }
    let _ = writeln!(io.out, "</testsuites>");
}

/// Runs the command: exit 0 when every case passes, 1 when any fails, 2 on error.
pub fn run(args: &TestArgs, io: &mut Io<'_>) -> u8 {
    if args.format != "text" && args.format != "junit" {
        let _ = writeln!(
            io.err,
            "Error: -format must be \"text\" or \"junit\", got {:?}",
            args.format
        );
        return 2;
    }
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for f in &args.files {
        load_cases(f, &mut cases, &mut errors);
    }
    if !errors.is_empty() {
        for e in &errors {
            let _ = writeln!(io.err, "Error: {e}");
        }
        return 2;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(io.err, "Error: {e}");
            return 2;
        }
    };
    let outcomes = match rt.block_on(run_cases(args, cases)) {
        Ok(o) => o,
        Err(errors) => {
            for e in &errors {
                let _ = writeln!(io.err, "Error: {e}");
            }
            return 2;
        }
    };
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    if args.format == "junit" {
        junit(&outcomes, io);
    } else {
        for o in outcomes.iter().filter(|o| !o.passed()) {
            let _ = writeln!(
                io.out,
                "FAIL {}: Test {:?}: {}",
                o.loaded.file,
                o.loaded.name,
                o.failure()
            );
        }
        let _ = writeln!(
            io.out,
            "{} passed, {failed} failed",
            outcomes.len() - failed
        );
    }
    if outcomes.iter().any(|o| o.answer.is_err()) {
        2
    } else if failed > 0 {
        1
    } else {
        0
    }
}
