//! `tribune acl binding-rule ...`: create, list, read, update, delete, with `consul
//! acl binding-rule`'s flags and output.

use super::{answer, body, check_format, each, send, show, Done, FormatArg};
use crate::cli::http::HttpArgs;
use crate::cli::Io;
use clap::{Args, Subcommand};
use serde_json::Value;
use tribune_model::api::paths;
use tribune_model::api::{AclTemplatedPolicyVariables, Indexed};
use tribune_model::binding_rule::BindingRule;

#[derive(Debug, Subcommand)]
pub enum BindingRuleCommand {
    /// Create a binding rule for an auth method.
    Create(CreateArgs),
    /// List binding rules (-method keeps one method's).
    List(ListArgs),
    /// Show one binding rule.
    Read(IdArgs),
    /// Change a binding rule (its auth method stays).
    Update(UpdateArgs),
    /// Delete a binding rule.
    Delete(IdArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The auth method whose logins the rule binds.
    #[arg(long, default_value = "")]
    pub method: String,
    /// A description of the rule.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Which logins the rule applies to: a filter expression over the mapped claims
    /// (`value.<name>`, `list.<name>`); empty applies to every login.
    #[arg(long, default_value = "")]
    pub selector: String,
    /// What the rule binds: service, node, role, policy or templated-policy.
    #[arg(long = "bind-type", default_value = "")]
    pub bind_type: String,
    /// The name bound; `${value.<name>}` is replaced by that mapped claim.
    #[arg(long = "bind-name", default_value = "")]
    pub bind_name: String,
    /// A templated policy's variable, as Name=VALUE (`${value.<name>}` allowed).
    #[arg(long = "bind-vars")]
    pub bind_vars: Vec<String>,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the rules of this auth method.
    #[arg(long, default_value = "")]
    pub method: String,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The rule's ID (or a unique prefix of it).
    #[arg(long, default_value = "")]
    pub id: String,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The rule's ID (or a unique prefix of it).
    #[arg(long, default_value = "")]
    pub id: String,
    /// A new description.
    #[arg(long)]
    pub description: Option<String>,
    /// A new selector.
    #[arg(long)]
    pub selector: Option<String>,
    /// A new bind type.
    #[arg(long = "bind-type")]
    pub bind_type: Option<String>,
    /// A new bind name.
    #[arg(long = "bind-name")]
    pub bind_name: Option<String>,
    /// New templated policy variables (Name=VALUE).
    #[arg(long = "bind-vars")]
    pub bind_vars: Vec<String>,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: BindingRuleCommand, io: &mut Io<'_>) -> Done {
    match cmd {
        BindingRuleCommand::Create(a) => create(&a, io),
        BindingRuleCommand::List(a) => list(&a, io),
        BindingRuleCommand::Read(a) => read(&a, io),
        BindingRuleCommand::Update(a) => update(&a, io),
        BindingRuleCommand::Delete(a) => delete(&a, io),
    }
}

/// `consul acl binding-rule read`'s pretty format.
fn text(r: &Indexed<BindingRule>) -> String {
    let r = &r.item;
    let mut out = format!(
        "ID:           {}\nAuthMethod:   {}\nDescription:  {}\nBindType:     {}\nBindName:     {}\n",
        r.id, r.auth_method, r.description, r.bind_type, r.bind_name
    );
    if let Some(v) = &r.bind_vars {
        out.push_str(&format!("BindVars:     Name={}\n", v.name));
    }
    out.push_str(&format!("Selector:     {}\n", r.selector));
    out
}

fn bind_vars(given: &[String]) -> Result<Option<AclTemplatedPolicyVariables>, super::Fail> {
    let mut out: Option<AclTemplatedPolicyVariables> = None;
    for kv in given {
        match kv.split_once('=') {
            Some(("Name" | "name", v)) => {
                out = Some(AclTemplatedPolicyVariables {
                    name: v.to_string(),
                })
            }
            Some((k, _)) => {
                return Err(format!(
                "Error parsing -bind-vars: unknown variable {k:?} (templated policies take Name)"
            )
                .into())
            }
            None => {
                return Err(format!("Error parsing -bind-vars: {kv:?} is not Name=VALUE").into())
            }
        }
    }
    Ok(out)
}

fn create(a: &CreateArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    if a.method.is_empty() {
        return Err("Missing required '-method' flag".into());
    }
    if a.bind_type.is_empty() {
        return Err("Missing required '-bind-type' flag".into());
    }
    if a.bind_name.is_empty() {
        return Err("Missing required '-bind-name' flag".into());
    }
    let rule = BindingRule {
        id: String::new(),
        description: a.description.clone(),
        auth_method: a.method.clone(),
        selector: a.selector.clone(),
        bind_type: a.bind_type.clone(),
        bind_name: a.bind_name.clone(),
        bind_vars: bind_vars(&a.bind_vars)?,
    };
    let v = send(
        &a.http,
        "PUT",
        paths::ACL_BINDING_RULE,
        body(&rule),
        "Failed to create new binding rule",
        io,
    )?;
    show(&a.format, &v, text, io)
}

fn list(a: &ListArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let path = if a.method.is_empty() {
        paths::ACL_BINDING_RULES.to_string()
    } else {
        format!(
            "{}?authmethod={}",
            paths::ACL_BINDING_RULES,
            tribune_client::encode(&a.method)
        )
    };
    let v = send(
        &a.http,
        "GET",
        &path,
        None,
        "Failed to retrieve the binding rule list",
        io,
    )?;
    show(
        &a.format,
        &v,
        |list: &Vec<Indexed<BindingRule>>| {
            each(
                list,
                |r| {
                    let r = &r.item;
                    format!(
                        "{}:\n   AuthMethod:   {}\n   Description:  {}\n   BindType:     {}\n   BindName:     {}\n   Selector:     {}\n",
                        r.id, r.auth_method, r.description, r.bind_type, r.bind_name, r.selector
                    )
                },
                "",
            )
        },
        io,
    )
}

/// The full ID of `given` (an ID or a unique prefix of one).
fn full_id(http: &HttpArgs, given: &str, io: &mut Io<'_>) -> Result<String, super::Fail> {
    if given.is_empty() {
        return Err("Must specify the -id parameter".into());
    }
    if uuid_like(given) {
        return Ok(given.to_string());
    }
    let v = send(
        http,
        "GET",
        paths::ACL_BINDING_RULES,
        None,
        "Error determining binding rule ID",
        io,
    )?;
    let list: Vec<Indexed<BindingRule>> = answer(&v)?;
    let found: Vec<&str> = list
        .iter()
        .map(|r| r.item.id.as_str())
        .filter(|id| id.starts_with(given))
        .collect();
    match found[..] {
        [one] => Ok(one.to_string()),
        [] => Err(format!(
            "Error determining binding rule ID: No such binding rule ID with prefix: {given}"
        )
        .into()),
        _ => Err(format!(
            "Error determining binding rule ID: Multiple binding rule IDs with prefix: {given}"
        )
        .into()),
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn path(id: &str) -> String {
    paths::fill(paths::ACL_BINDING_RULE_ID, &[&tribune_client::encode(id)])
}

fn read(a: &IdArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let id = full_id(&a.http, &a.id, io)?;
    let v = send(
        &a.http,
        "GET",
        &path(&id),
        None,
        &format!("Error reading binding rule {id:?}"),
        io,
    )?;
    if v.is_null() {
        return Err(format!("Binding rule not found with ID {id:?}").into());
    }
    show(&a.format, &v, text, io)
}

fn update(a: &UpdateArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let id = full_id(&a.http, &a.id, io)?;
    let current: Indexed<BindingRule> = answer(&send(
        &a.http,
        "GET",
        &path(&id),
        None,
        &format!("Error reading binding rule {id:?}"),
        io,
    )?)?;
    let mut r = current.item;
    if let Some(d) = &a.description {
        r.description = d.clone();
    }
    if let Some(s) = &a.selector {
        r.selector = s.clone();
    }
    if let Some(t) = &a.bind_type {
        r.bind_type = t.clone();
    }
    if let Some(n) = &a.bind_name {
        r.bind_name = n.clone();
    }
    if !a.bind_vars.is_empty() {
        r.bind_vars = bind_vars(&a.bind_vars)?;
    }
    let v = send(
        &a.http,
        "PUT",
        &path(&id),
        body(&r),
        &format!("Error updating binding rule {id:?}"),
        io,
    )?;
    show(&a.format, &v, text, io)
}

fn delete(a: &IdArgs, io: &mut Io<'_>) -> Done {
    let id = full_id(&a.http, &a.id, io)?;
    let _: Value = send(
        &a.http,
        "DELETE",
        &path(&id),
        None,
        &format!("Error deleting binding rule {id:?}"),
        io,
    )?;
    let _ = writeln!(io.out, "Binding rule {id:?} deleted successfully");
    Ok(())
}
