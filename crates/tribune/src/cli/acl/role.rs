//! `tribune acl role ...`: create, list, read, update, delete, with `consul acl
//! role`'s flags, output and messages.

use super::{
    answer, body, check_format, each, link_lines, links, send, show, updated_links, Done,
    FormatArg, IdNameArgs, ListArgs,
};
use crate::cli::http::HttpArgs;
use crate::cli::Io;
use clap::{Args, Subcommand};
use tribune_model::api::paths;
use tribune_model::api::{AclRole, AclRoleBody};

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create a role linking policies.
    Create(RoleCreateArgs),
    /// List every role.
    List(ListArgs),
    /// Show one role (by -id, a unique ID prefix, or -name).
    Read(IdNameArgs),
    /// Change a role's name, description or policies (by -id, a unique prefix).
    Update(RoleUpdateArgs),
    /// Delete a role (by -id or -name).
    Delete(IdNameArgs),
}

#[derive(Debug, Args)]
pub struct RoleCreateArgs {
    /// The new role's name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// A description of the role.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Name of a policy to link (repeatable).
    #[arg(long = "policy-name")]
    pub policy_name: Vec<String>,
    /// ID of a policy to link (repeatable).
    #[arg(long = "policy-id")]
    pub policy_id: Vec<String>,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct RoleUpdateArgs {
    /// The ID of the role to update (a unique prefix is enough).
    #[arg(long)]
    pub id: Option<String>,
    /// The role's new name.
    #[arg(long)]
    pub name: Option<String>,
    /// The role's new description.
    #[arg(long)]
    pub description: Option<String>,
    /// Name of a policy to link (repeatable).
    #[arg(long = "policy-name")]
    pub policy_name: Vec<String>,
    /// ID of a policy to link (repeatable).
    #[arg(long = "policy-id")]
    pub policy_id: Vec<String>,
    /// Replace the role's policies with the -policy-* flags' instead of adding them.
    #[arg(long = "no-merge")]
    pub no_merge: bool,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: RoleCommand, io: &mut Io<'_>) -> Done {
    match cmd {
        RoleCommand::Create(a) => role_create(&a, io),
        RoleCommand::List(a) => role_list(&a, io),
        RoleCommand::Read(a) => super::read_one("role", &a, role_text, io),
        RoleCommand::Update(a) => role_update(&a, io),
        RoleCommand::Delete(a) => super::delete_one("role", &a, io),
    }
}

/// `consul acl role read`'s pretty format.
fn role_text(r: &AclRole) -> String {
    let mut out = format!(
        "ID:           {}\nName:         {}\nDescription:  {}\n",
        r.id, r.name, r.description,
    );
    out.push_str(&link_lines(&r.policies, "Policies", "   "));
    out
}

fn role_create(a: &RoleCreateArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    if a.name.is_empty() {
        return Err("Missing required '-name' flag".into());
    }
    let policies = links(&a.policy_name, &a.policy_id);
    if policies.is_empty() {
        return Err(
            "Cannot create a role without specifying -policy-name or -policy-id at least once"
                .into(),
        );
    }
    let role = AclRoleBody {
        name: a.name.clone(),
        description: a.description.clone(),
        policies,
        ..AclRoleBody::default()
    };
    let v = send(
        &a.http,
        "PUT",
        paths::ACL_ROLE,
        body(&role),
        "Failed to create new role",
        io,
    )?;
    show(&a.format, &v, role_text, io)
}

fn role_list(a: &ListArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let v = send(
        &a.http,
        "GET",
        paths::ACL_ROLES,
        None,
        "Failed to retrieve the role list",
        io,
    )?;
    show(
        &a.format,
        &v,
        |list: &Vec<AclRole>| {
            each(
                list,
                |r| {
                    format!(
                        "{}:\n   ID:           {}\n   Description:  {}\n{}",
                        r.name,
                        r.id,
                        r.description,
                        link_lines(&r.policies, "   Policies", "      ")
                    )
                },
                "",
            )
        },
        io,
    )
}

/// `consul acl role update`: unset flags keep the role's values; policies given are
/// added to the role's (`-no-merge`: they replace them).
fn role_update(a: &RoleUpdateArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let given =
        a.id.clone()
            .filter(|i| !i.is_empty())
            .ok_or("Cannot update a role without specifying the -id parameter")?;
    let id = super::full_id(&a.http, "role", &given, io)?;
    let current: AclRole = answer(&send(
        &a.http,
        "GET",
        &paths::fill(paths::ACL_ROLE_ID, &[&id]),
        None,
        &format!("Error reading role {id:?}"),
        io,
    )?)?;
    let update = AclRoleBody {
        id: id.clone(),
        name: a
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or(current.name),
        description: a.description.clone().unwrap_or(current.description),
        policies: updated_links(
            &current.policies,
            links(&a.policy_name, &a.policy_id),
            !a.no_merge,
        ),
    };
    let v = send(
        &a.http,
        "PUT",
        &paths::fill(paths::ACL_ROLE_ID, &[&id]),
        body(&update),
        &format!("Error updating role {id:?}"),
        io,
    )?;
    show(&a.format, &v, role_text, io)
}
