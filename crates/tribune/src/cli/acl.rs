//! `tribune acl ...`: bootstrap, policies, tokens and roles, with Consul's flags,
//! output (`consul acl ... -format pretty|json`), messages and exit codes.
//!
//! IDs may be given as a unique prefix (Consul's partial IDs): the command lists the
//! objects and takes the one ID that starts with it.

use super::http::{call_ok, HttpArgs};
use super::Io;
use clap::{Args, Subcommand};
use serde_json::Value;
use tribune_model::api::paths;
use tribune_model::api::{AclLink, AclPolicy, AclPolicyBody, AclToken, AclTokenBody};

mod auth_method;
mod binding_rule;
mod role;
use auth_method::AuthMethodCommand;
use binding_rule::BindingRuleCommand;
use role::RoleCommand;

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Create the first management token (once).
    Bootstrap(BootstrapArgs),
    /// ACL policies: create, list, read, update, delete.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// ACL tokens: create, list, read, update, clone, delete.
    #[command(subcommand)]
    Token(TokenCommand),
    /// ACL roles (named sets of policies): create, list, read, update, delete.
    #[command(subcommand)]
    Role(RoleCommand),
    /// ACL auth methods (log in with a JWT or OIDC identity): create, list, read,
    /// update, delete.
    #[command(subcommand, name = "auth-method")]
    AuthMethod(AuthMethodCommand),
    /// ACL binding rules (what a login through an auth method is given): create,
    /// list, read, update, delete.
    #[command(subcommand, name = "binding-rule")]
    BindingRule(BindingRuleCommand),
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

/// `-format pretty|json` of the read and list commands.
#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format: `pretty` or `json`.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy from rules (`-rules @file` reads a file, `-` stdin).
    Create(PolicyCreateArgs),
    /// List every policy.
    List(ListArgs),
    /// Show one policy (by -id, a unique ID prefix, or -name).
    Read(IdNameArgs),
    /// Change a policy's name, description or rules.
    Update(PolicyUpdateArgs),
    /// Delete a policy (by -id or -name).
    Delete(IdNameArgs),
}

#[derive(Debug, Args)]
pub struct PolicyCreateArgs {
    /// The new policy's name.
    #[arg(long)]
    pub name: String,
    /// A description of the policy.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Rules text, `@file`, or `-` for stdin.
    #[arg(long)]
    pub rules: String,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// `-id` or `-name` of one policy or role (`read`, `delete`).
#[derive(Debug, Args)]
pub struct IdNameArgs {
    /// Its ID (a unique prefix is enough).
    #[arg(long)]
    pub id: Option<String>,
    /// Its name.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct PolicyUpdateArgs {
    /// The ID of the policy to update (a unique prefix is enough).
    #[arg(long)]
    pub id: Option<String>,
    /// With -id: the policy's new name. Without: the name of the policy to update.
    #[arg(long)]
    pub name: Option<String>,
    /// The policy's new description.
    #[arg(long)]
    pub description: Option<String>,
    /// The new rules: text, `@file`, or `-` for stdin.
    #[arg(long)]
    pub rules: Option<String>,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token linked to policies and roles.
    Create(TokenCreateArgs),
    /// List every token (SecretIDs shown only to acl:write callers).
    List(ListArgs),
    /// Show one token (by -id, a unique AccessorID prefix, or -self).
    Read(TokenReadArgs),
    /// Change a token's description, policies or roles (never its SecretID).
    Update(TokenUpdateArgs),
    /// Copy a token: new AccessorID and SecretID, the same policies and roles.
    Clone(TokenCloneArgs),
    /// Delete a token.
    Delete(TokenIdArgs),
}

/// The policies and roles a token links, by name or ID (each flag repeatable).
#[derive(Debug, Args, Default)]
pub struct LinkArgs {
    /// Name of a policy to link (repeatable).
    #[arg(long = "policy-name")]
    pub policy_name: Vec<String>,
    /// ID of a policy to link (repeatable).
    #[arg(long = "policy-id")]
    pub policy_id: Vec<String>,
    /// Name of a role to link (repeatable).
    #[arg(long = "role-name")]
    pub role_name: Vec<String>,
    /// ID of a role to link (repeatable).
    #[arg(long = "role-id")]
    pub role_id: Vec<String>,
}

impl LinkArgs {
    fn policies(&self) -> Vec<AclLink> {
        links(&self.policy_name, &self.policy_id)
    }
    fn roles(&self) -> Vec<AclLink> {
        links(&self.role_name, &self.role_id)
    }
}

fn links(names: &[String], ids: &[String]) -> Vec<AclLink> {
    let by_name = names.iter().map(|n| AclLink {
        name: n.clone(),
        ..AclLink::default()
    });
    let by_id = ids.iter().map(|i| AclLink {
        id: i.clone(),
        ..AclLink::default()
    });
    by_name.chain(by_id).collect()
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub links: LinkArgs,
    /// A description of the token.
    #[arg(long, default_value = "")]
    pub description: String,
    /// A service identity: write on the service and its sidecar, read on the rest
    /// (repeatable; `NAME` or `NAME:dc1,dc2`).
    #[arg(long = "service-identity", value_name = "NAME")]
    pub service_identities: Vec<String>,
    /// A node identity, `NAME:DATACENTER` (repeatable).
    #[arg(long = "node-identity", value_name = "NAME:DC")]
    pub node_identities: Vec<String>,
    /// How long the token lives (Go duration, e.g. `8h`); it never expires without.
    #[arg(long = "expires-ttl", value_name = "DURATION")]
    pub expires_ttl: Option<String>,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct TokenReadArgs {
    /// The token's AccessorID (a unique prefix is enough).
    #[arg(long)]
    pub id: Option<String>,
    /// Read the token given with -token / CONSUL_HTTP_TOKEN instead.
    #[arg(long = "self")]
    pub self_: bool,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct TokenUpdateArgs {
    /// The AccessorID of the token to update (a unique prefix is enough).
    #[arg(long)]
    pub id: Option<String>,
    /// The token's new description.
    #[arg(long)]
    pub description: Option<String>,
    /// The -policy-* and -role-* flags replace the token's links of that kind.
    #[command(flatten)]
    pub links: LinkArgs,
    /// Add the -policy-* flags to the token's policies instead of replacing them.
    #[arg(long = "merge-policies")]
    pub merge_policies: bool,
    /// Add the -role-* flags to the token's roles instead of replacing them.
    #[arg(long = "merge-roles")]
    pub merge_roles: bool,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct TokenCloneArgs {
    /// The AccessorID of the token to clone (a unique prefix is enough).
    #[arg(long)]
    pub id: Option<String>,
    /// The clone's description (default: the original's).
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct TokenIdArgs {
    /// The token's AccessorID (a unique prefix is enough).
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: AclCommand, io: &mut Io<'_>) -> u8 {
    let r = match cmd {
        AclCommand::Bootstrap(a) => bootstrap(&a, io),
        AclCommand::Policy(c) => match c {
            PolicyCommand::Create(a) => policy_create(&a, io),
            PolicyCommand::List(a) => policy_list(&a, io),
            PolicyCommand::Read(a) => read_one("policy", &a, policy_text, io),
            PolicyCommand::Update(a) => policy_update(&a, io),
            PolicyCommand::Delete(a) => delete_one("policy", &a, io),
        },
        AclCommand::Token(c) => match c {
            TokenCommand::Create(a) => token_create(&a, io),
            TokenCommand::List(a) => token_list(&a, io),
            TokenCommand::Read(a) => token_read(&a, io),
            TokenCommand::Update(a) => token_update(&a, io),
            TokenCommand::Clone(a) => token_clone(&a, io),
            TokenCommand::Delete(a) => token_delete(&a, io),
        },
        AclCommand::Role(c) => role::run(c, io),
        AclCommand::AuthMethod(c) => auth_method::run(c, io),
        AclCommand::BindingRule(c) => binding_rule::run(c, io),
    };
    match r {
        Ok(()) => 0,
        Err(Fail::Code(c)) => c,
        Err(Fail::Message(m)) => {
            let _ = writeln!(io.err, "{m}");
            1
        }
    }
}

/// Why a command stopped: a message still to print, or a code (already reported).
enum Fail {
    Message(String),
    Code(u8),
}

impl From<String> for Fail {
    fn from(m: String) -> Fail {
        Fail::Message(m)
    }
}

impl From<&str> for Fail {
    fn from(m: &str) -> Fail {
        Fail::Message(m.to_string())
    }
}

type Done = Result<(), Fail>;

/// Sends a request and returns the agent's answer as it came (what `-format json`
/// prints); [`answer`] reads it as its typed shape.
fn send(
    http: &HttpArgs,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    failure: &str,
    io: &mut Io<'_>,
) -> Result<Value, Fail> {
    let r = call_ok(http, method, path, body, failure, 1, io).map_err(Fail::Code)?;
    for w in r.headers_named("x-tribune-warning") {
        let _ = writeln!(io.err, "WARNING: {w}");
    }
    Ok(serde_json::from_str(&r.body).unwrap_or_default())
}

/// A request body.
fn body<T: serde::Serialize>(t: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(t).ok()
}

/// The agent's answer as its typed shape ([`tribune_model::api`]).
fn answer<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, Fail> {
    T::deserialize(v).map_err(|e| Fail::Message(format!("Unexpected answer from the agent: {e}")))
}

fn check_format(f: &FormatArg) -> Done {
    match f.format.as_str() {
        "pretty" | "json" => Ok(()),
        other => Err(format!("Invalid format: {other}").into()),
    }
}

/// Prints the agent's answer `v` as `-format` asks: as it came (`json`), or as the
/// caller's text of its typed shape `T` (`pretty`).
fn show<T: serde::de::DeserializeOwned>(
    f: &FormatArg,
    v: &Value,
    pretty: impl Fn(&T) -> String,
    io: &mut Io<'_>,
) -> Done {
    if f.format == "json" {
        let _ = writeln!(io.out, "{}", super::config::pretty4(v));
    } else {
        let _ = write!(io.out, "{}", pretty(&answer(v)?));
    }
    Ok(())
}

fn link_lines(links: &[AclLink], title: &str, indent: &str) -> String {
    if links.is_empty() {
        return String::new();
    }
    let mut out = format!("{title}:\n");
    for l in links {
        out.push_str(&format!("{indent}{} - {}\n", l.id, l.name));
    }
    out
}

/// `consul acl token read`'s pretty format.
fn token_text(t: &AclToken) -> String {
    let mut out = format!(
        "AccessorID:       {}\nSecretID:         {}\nDescription:      {}\nLocal:            {}\n",
        t.accessor_id, t.secret_id, t.description, t.local,
    );
    if !t.auth_method.is_empty() {
        out.push_str(&format!("Auth Method:      {}\n", t.auth_method));
    }
    out.push_str(&format!("Create Time:      {}\n", t.create_time));
    if let Some(at) = &t.expiration_time {
        out.push_str(&format!("Expiration Time:  {at}\n"));
    }
    out.push_str(&link_lines(&t.policies, "Policies", "   "));
    out.push_str(&link_lines(&t.roles, "Roles", "   "));
    if !t.service_identities.is_empty() {
        out.push_str("Service Identities:\n");
        for s in &t.service_identities {
            let dcs = if s.datacenters.is_empty() {
                "all".to_string()
            } else {
                s.datacenters.join(", ")
            };
            out.push_str(&format!("   {} (Datacenters: {dcs})\n", s.service_name));
        }
    }
    if !t.node_identities.is_empty() {
        out.push_str("Node Identities:\n");
        for n in &t.node_identities {
            out.push_str(&format!(
                "   {} (Datacenter: {})\n",
                n.node_name, n.datacenter
            ));
        }
    }
    if !t.templated_policies.is_empty() {
        out.push_str("Templated Policies:\n");
        for p in &t.templated_policies {
            out.push_str(&format!("   {}\n", p.template_name));
            if let Some(v) = p.template_variables.as_ref().filter(|v| !v.name.is_empty()) {
                out.push_str(&format!("      Name: {}\n", v.name));
            }
        }
    }
    out
}

/// `consul acl policy read`'s pretty format (one datacenter: `Datacenters` is empty,
/// meaning all).
fn policy_text(p: &AclPolicy) -> String {
    let mut rules = p.rules.clone();
    if !rules.ends_with('\n') {
        rules.push('\n');
    }
    format!(
        "ID:           {}\nName:         {}\nDescription:  {}\nDatacenters:  \nRules:\n{rules}",
        p.id, p.name, p.description,
    )
}

fn each<T>(items: &[T], entry: impl Fn(&T) -> String, between: &str) -> String {
    items.iter().map(entry).collect::<Vec<_>>().join(between)
}

/// Reads rules given as text, `@file` or `-` (stdin).
fn rules_text(arg: &str) -> Result<String, Fail> {
    match arg.strip_prefix('@') {
        Some(f) => super::read_file(f).map_err(Fail::Message),
        None if arg == "-" => super::config::load_input("-").map_err(Fail::Message),
        None => Ok(arg.to_string()),
    }
}

/// `kind` is `token`, `policy` or `role`: the full ID a unique prefix names
/// (Consul's `GetTokenIDFromPartial` and friends).
fn full_id(http: &HttpArgs, kind: &str, given: &str, io: &mut Io<'_>) -> Result<String, Fail> {
    if given.len() == 36 || (kind == "policy" && given == "global-management") {
        return Ok(if given == "global-management" {
            "00000000-0000-0000-0000-000000000001".into()
        } else {
            given.to_string()
        });
    }
    let (path, key, plural) = match kind {
        "token" => (paths::ACL_TOKENS, "AccessorID", "tokens"),
        "policy" => (paths::ACL_POLICIES, "ID", "policies"),
        _ => (paths::ACL_ROLES, "ID", "roles"),
    };
    let failure = format!("Error determining {kind} ID: Failed to list {plural}");
    let list: Vec<Value> = answer(&send(http, "GET", path, None, &failure, io)?)?;
    let found: Vec<&str> = list
        .iter()
        .filter_map(|t| t.get(key).and_then(Value::as_str))
        .filter(|id| id.starts_with(given))
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).to_string()),
        [] => Err(
            format!("Error determining {kind} ID: No such {kind} ID with prefix: {given}").into(),
        ),
        _ => Err(
            format!("Error determining {kind} ID: Multiple {kind} IDs with prefix: {given}").into(),
        ),
    }
}

/// The ID of the policy or role given by `-id` (or prefix) or `-name`.
fn id_or_name(
    http: &HttpArgs,
    kind: &str,
    id: &Option<String>,
    name: &Option<String>,
    io: &mut Io<'_>,
) -> Result<String, Fail> {
    match (id.as_deref().filter(|i| !i.is_empty()), name.as_deref()) {
        (Some(id), _) => full_id(http, kind, id, io),
        (None, Some(name)) if !name.is_empty() => {
            let v = send(
                http,
                "GET",
                &paths::acl_by_name(kind, &tribune_client::encode(name)),
                None,
                &format!("Error reading {kind} {name:?}"),
                io,
            )?;
            Ok(answer::<AclLink>(&v)?.id)
        }
        _ => Err("Must specify either the -id or -name parameters".into()),
    }
}

fn bootstrap(a: &BootstrapArgs, io: &mut Io<'_>) -> Done {
    let v = send(
        &a.http,
        "PUT",
        paths::ACL_BOOTSTRAP,
        None,
        "Failed ACL bootstrapping",
        io,
    )?;
    let _ = write!(io.out, "{}", token_text(&answer(&v)?));
    Ok(())
}

fn policy_create(a: &PolicyCreateArgs, io: &mut Io<'_>) -> Done {
    let rules = rules_text(&a.rules)?;
    let policy = AclPolicyBody {
        name: a.name.clone(),
        description: a.description.clone(),
        rules,
        ..AclPolicyBody::default()
    };
    let v = send(
        &a.http,
        "PUT",
        paths::ACL_POLICY,
        body(&policy),
        "Failed to create new policy",
        io,
    )?;
    let _ = write!(io.out, "{}", policy_text(&answer(&v)?));
    Ok(())
}

fn policy_list(a: &ListArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let v = send(
        &a.http,
        "GET",
        paths::ACL_POLICIES,
        None,
        "Failed to retrieve the policy list",
        io,
    )?;
    show(
        &a.format,
        &v,
        |list: &Vec<AclPolicy>| {
            each(
                list,
                |p| {
                    format!(
                        "{}:\n   ID:           {}\n   Description:  {}\n   Datacenters:  \n",
                        p.name, p.id, p.description,
                    )
                },
                "",
            )
        },
        io,
    )
}

/// `acl policy|role read`: one object by -id (a unique prefix) or -name.
fn read_one<T: serde::de::DeserializeOwned>(
    kind: &str,
    a: &IdNameArgs,
    text: fn(&T) -> String,
    io: &mut Io<'_>,
) -> Done {
    check_format(&a.format)?;
    let id = id_or_name(&a.http, kind, &a.id, &a.name, io)?;
    let v = send(
        &a.http,
        "GET",
        &paths::acl_item(kind, &id),
        None,
        &format!("Error reading {kind} {id:?}"),
        io,
    )?;
    show(&a.format, &v, text, io)
}

/// `acl policy|role delete`: one object by -id (a unique prefix) or -name.
fn delete_one(kind: &str, a: &IdNameArgs, io: &mut Io<'_>) -> Done {
    let id = id_or_name(&a.http, kind, &a.id, &a.name, io)?;
    send(
        &a.http,
        "DELETE",
        &paths::acl_item(kind, &id),
        None,
        &format!("Error deleting {kind} {id:?}"),
        io,
    )?;
    let mut shown = kind.to_string();
    shown[..1].make_ascii_uppercase();
    let _ = writeln!(io.out, "{shown} {id:?} deleted successfully");
    Ok(())
}

fn policy_update(a: &PolicyUpdateArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    if a.id.as_deref().unwrap_or("").is_empty() && a.name.as_deref().unwrap_or("").is_empty() {
        return Err("Cannot update a policy without specifying the -id or -name parameter".into());
    }
    let id = id_or_name(&a.http, "policy", &a.id, &a.name, io)?;
    let current: AclPolicy = answer(&send(
        &a.http,
        "GET",
        &paths::fill(paths::ACL_POLICY_ID, &[&id]),
        None,
        &format!("Error reading policy {id:?}"),
        io,
    )?)?;
    let mut p = AclPolicyBody {
        id: current.id,
        name: current.name,
        description: current.description,
        rules: current.rules,
        datacenters: Vec::new(),
    };
    let by_id = a.id.as_deref().is_some_and(|i| !i.is_empty());
    if let (true, Some(name)) = (by_id, a.name.as_deref().filter(|n| !n.is_empty())) {
        p.name = name.to_string();
    }
    if let Some(d) = &a.description {
        p.description = d.clone();
    }
    if let Some(r) = &a.rules {
        p.rules = rules_text(r)?;
    }
    let v = send(
        &a.http,
        "PUT",
        &paths::fill(paths::ACL_POLICY_ID, &[&id]),
        body(&p),
        &format!("Failed to update policy {id}"),
        io,
    )?;
    show(&a.format, &v, policy_text, io)
}

fn token_create(a: &TokenCreateArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let service_identities = a
        .service_identities
        .iter()
        .map(|s| {
            let (name, dcs) = s.split_once(':').unwrap_or((s, ""));
            tribune_model::api::AclServiceIdentity {
                service_name: name.to_string(),
                datacenters: dcs
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect();
    let node_identities = a
        .node_identities
        .iter()
        .map(|n| match n.split_once(':') {
            Some((name, dc)) => Ok(tribune_model::api::AclNodeIdentity {
                node_name: name.to_string(),
                datacenter: dc.to_string(),
            }),
            None => Err(Fail::Message(format!(
                "Malformed -node-identity argument: {n:?} (NAME:DATACENTER)"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let token = AclTokenBody {
        description: a.description.clone(),
        policies: a.links.policies(),
        roles: a.links.roles(),
        service_identities,
        node_identities,
        expiration_ttl: a.expires_ttl.clone().map(Value::String),
        ..AclTokenBody::default()
    };
    let v = send(
        &a.http,
        "PUT",
        paths::ACL_TOKEN,
        body(&token),
        "Failed to create new token",
        io,
    )?;
    show(&a.format, &v, token_text, io)
}

fn token_list(a: &ListArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let v = send(
        &a.http,
        "GET",
        paths::ACL_TOKENS,
        None,
        "Failed to retrieve the token list",
        io,
    )?;
    show(
        &a.format,
        &v,
        |list: &Vec<AclToken>| each(list, token_text, "\n"),
        io,
    )
}

fn required_id(id: &Option<String>, missing: &str) -> Result<String, Fail> {
    id.clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| missing.into())
}

fn token_read(a: &TokenReadArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let v = if a.self_ {
        send(
            &a.http,
            "GET",
            paths::ACL_TOKEN_SELF,
            None,
            "Error reading token",
            io,
        )?
    } else {
        let given = required_id(&a.id, "Must specify the -id parameter")?;
        let id = full_id(&a.http, "token", &given, io)?;
        send(
            &a.http,
            "GET",
            &paths::fill(paths::ACL_TOKEN_ID, &[&id]),
            None,
            &format!("Error reading token {id:?}"),
            io,
        )?
    };
    show(&a.format, &v, token_text, io)
}

/// The links of a token after an update: the current ones plus the flags' when
/// merging, else the flags' when any is given, else the current ones.
fn updated_links(current: &[AclLink], given: Vec<AclLink>, merge: bool) -> Vec<AclLink> {
    let current = current.iter().map(|l| AclLink {
        id: l.id.clone(),
        name: String::new(),
    });
    match (merge, given.is_empty()) {
        (_, true) => current.collect(),
        (false, false) => given,
        (true, false) => current.chain(given).collect(),
    }
}

fn token_update(a: &TokenUpdateArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let given = required_id(
        &a.id,
        "Cannot update a token without specifying the -id parameter",
    )?;
    let id = full_id(&a.http, "token", &given, io)?;
    let t: AclToken = answer(&send(
        &a.http,
        "GET",
        &paths::fill(paths::ACL_TOKEN_ID, &[&id]),
        None,
        "Error when retrieving current token",
        io,
    )?)?;
    let update = AclTokenBody {
        accessor_id: id.clone(),
        description: a.description.clone().unwrap_or(t.description),
        policies: updated_links(&t.policies, a.links.policies(), a.merge_policies),
        roles: updated_links(&t.roles, a.links.roles(), a.merge_roles),
        ..AclTokenBody::default()
    };
    let v = send(
        &a.http,
        "PUT",
        &paths::fill(paths::ACL_TOKEN_ID, &[&id]),
        body(&update),
        &format!("Failed to update token {id}"),
        io,
    )?;
    let _ = writeln!(io.out, "Token updated successfully.");
    show(&a.format, &v, token_text, io)
}

fn token_clone(a: &TokenCloneArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let given = required_id(
        &a.id,
        "Cannot clone a token without specifying the -id parameter",
    )?;
    let id = full_id(&a.http, "token", &given, io)?;
    let v = send(
        &a.http,
        "PUT",
        &paths::fill(paths::ACL_TOKEN_CLONE, &[&id]),
        body(&AclTokenBody {
            description: a.description.clone(),
            ..AclTokenBody::default()
        }),
        "Error cloning token",
        io,
    )?;
    let _ = writeln!(io.out, "Token cloned successfully.");
    show(&a.format, &v, token_text, io)
}

fn token_delete(a: &TokenIdArgs, io: &mut Io<'_>) -> Done {
    let given = required_id(&a.id, "Must specify the -id parameter")?;
    let id = full_id(&a.http, "token", &given, io)?;
    send(
        &a.http,
        "DELETE",
        &paths::fill(paths::ACL_TOKEN_ID, &[&id]),
        None,
        &format!("Error deleting token {id:?}"),
        io,
    )?;
    let _ = writeln!(io.out, "Token {id:?} deleted successfully");
    Ok(())
}
