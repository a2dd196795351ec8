//! `tribune acl auth-method ...`: create, list, read, update, delete, with `consul acl
//! auth-method`'s flags (`-config @file.json` for the method's `Config`).

use super::{answer, body, check_format, each, send, show, Done, FormatArg, ListArgs};
use crate::cli::http::HttpArgs;
use crate::cli::Io;
use clap::{Args, Subcommand};
use serde_json::Value;
use tribune_model::api::paths;
use tribune_model::api::Indexed;
use tribune_model::auth_method::{AuthMethod, MethodConfig, MethodStub};

#[derive(Debug, Subcommand)]
pub enum AuthMethodCommand {
    /// Create an auth method (types jwt and oidc).
    Create(CreateArgs),
    /// List every auth method.
    List(ListArgs),
    /// Show one auth method, its Config included.
    Read(NameArgs),
    /// Change an auth method (its type stays).
    Update(UpdateArgs),
    /// Delete an auth method.
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The method's type: jwt or oidc.
    #[arg(long = "type", default_value = "")]
    pub method_type: String,
    /// The method's name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// The name shown to people logging in (the UI's "Log in with ...").
    #[arg(long = "display-name", default_value = "")]
    pub display_name: String,
    /// A description of the method.
    #[arg(long, default_value = "")]
    pub description: String,
    /// The longest a token made by a login lives (Go duration, 1m to 24h).
    #[arg(long = "max-token-ttl", default_value = "")]
    pub max_token_ttl: String,
    /// local (default) or global.
    #[arg(long = "token-locality", default_value = "")]
    pub token_locality: String,
    /// The method's Config as JSON (`@file` reads a file, `-` stdin).
    #[arg(long, default_value = "")]
    pub config: String,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The name of the method to update.
    #[arg(long, default_value = "")]
    pub name: String,
    /// A new display name.
    #[arg(long = "display-name")]
    pub display_name: Option<String>,
    /// A new description.
    #[arg(long)]
    pub description: Option<String>,
    /// A new longest token lifetime (Go duration).
    #[arg(long = "max-token-ttl")]
    pub max_token_ttl: Option<String>,
    /// A new token locality.
    #[arg(long = "token-locality")]
    pub token_locality: Option<String>,
    /// A new Config as JSON (`@file`, `-`); replaces the old one whole.
    #[arg(long)]
    pub config: Option<String>,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The method's name.
    #[arg(long, default_value = "")]
    pub name: String,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(cmd: AuthMethodCommand, io: &mut Io<'_>) -> Done {
    match cmd {
        AuthMethodCommand::Create(a) => create(&a, io),
        AuthMethodCommand::List(a) => list(&a, io),
        AuthMethodCommand::Read(a) => read(&a, io),
        AuthMethodCommand::Update(a) => update(&a, io),
        AuthMethodCommand::Delete(a) => delete(&a, io),
    }
}

/// `consul acl auth-method read`'s pretty format.
fn text(m: &Indexed<AuthMethod>) -> String {
    let m_ = &m.item;
    let config = serde_json::to_string_pretty(&m_.config).unwrap_or_default();
    format!(
        "Name:          {}\nType:          {}\nDisplayName:   {}\nDescription:   {}\nMaxTokenTTL:   {}\nTokenLocality: {}\nConfig:\n{config}\n",
        m_.name,
        m_.r#type,
        m_.display_name,
        m_.description,
        tribune_model::go::format_duration(m_.max_token_ttl),
        if m_.token_locality.is_empty() { "local" } else { &m_.token_locality },
    )
}

fn config_from(arg: &str) -> Result<MethodConfig, super::Fail> {
    let text = super::rules_text(arg)?;
    let value = tribune_model::decode::parse_json(text.as_bytes())
        .map_err(|e| format!("Error parsing -config: {e}"))?;
    serde_json::from_value(value).map_err(|e| format!("Error parsing -config: {e}").into())
}

fn duration(arg: &str) -> Result<i64, super::Fail> {
    if arg.is_empty() {
        return Ok(0);
    }
    tribune_model::go::parse_duration(arg)
        .map_err(|e| format!("Error parsing -max-token-ttl: {e}").into())
}

fn create(a: &CreateArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    if a.method_type.is_empty() {
        return Err("Missing required '-type' flag".into());
    }
    if a.name.is_empty() {
        return Err("Missing required '-name' flag".into());
    }
    let method = AuthMethod {
        name: a.name.clone(),
        r#type: a.method_type.clone(),
        display_name: a.display_name.clone(),
        description: a.description.clone(),
        max_token_ttl: duration(&a.max_token_ttl)?,
        token_locality: a.token_locality.clone(),
        config: if a.config.is_empty() {
            MethodConfig::default()
        } else {
            config_from(&a.config)?
        },
    };
    let v = send(
        &a.http,
        "PUT",
        &format!("{}?check=true", paths::ACL_AUTH_METHOD),
        body(&method),
        "Failed to create new auth method",
        io,
    )?;
    show(&a.format, &v, text, io)
}

fn list(a: &ListArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    let v = send(
        &a.http,
        "GET",
        paths::ACL_AUTH_METHODS,
        None,
        "Failed to retrieve the auth method list",
        io,
    )?;
    show(
        &a.format,
        &v,
        |list: &Vec<Indexed<MethodStub>>| {
            each(
                list,
                |m| {
                    format!(
                        "{}:\n   Type:         {}\n   DisplayName:  {}\n   Description:  {}\n",
                        m.item.name, m.item.r#type, m.item.display_name, m.item.description
                    )
                },
                "",
            )
        },
        io,
    )
}

fn path(name: &str) -> String {
    paths::fill(
        paths::ACL_AUTH_METHOD_NAME,
        &[&tribune_client::encode(name)],
    )
}

fn read(a: &NameArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    if a.name.is_empty() {
        return Err("Must specify the -name parameter".into());
    }
    let v = send(
        &a.http,
        "GET",
        &path(&a.name),
        None,
        &format!("Error reading auth method {:?}", a.name),
        io,
    )?;
    show(&a.format, &v, text, io)
}

fn update(a: &UpdateArgs, io: &mut Io<'_>) -> Done {
    check_format(&a.format)?;
    if a.name.is_empty() {
        return Err("Cannot update an auth method without specifying the -name parameter".into());
    }
    let current: Indexed<AuthMethod> = answer(&send(
        &a.http,
        "GET",
        &path(&a.name),
        None,
        &format!("Error reading auth method {:?}", a.name),
        io,
    )?)?;
    let mut m = current.item;
    if let Some(d) = &a.display_name {
        m.display_name = d.clone();
    }
    if let Some(d) = &a.description {
        m.description = d.clone();
    }
    if let Some(t) = &a.max_token_ttl {
        m.max_token_ttl = duration(t)?;
    }
    if let Some(l) = &a.token_locality {
        m.token_locality = l.clone();
    }
    if let Some(c) = &a.config {
        m.config = config_from(c)?;
    }
    let v = send(
        &a.http,
        "PUT",
        &format!("{}?check=true", path(&a.name)),
        body(&m),
        &format!("Error updating auth method {:?}", a.name),
        io,
    )?;
    show(&a.format, &v, text, io)
}

fn delete(a: &NameArgs, io: &mut Io<'_>) -> Done {
    if a.name.is_empty() {
        return Err("Must specify the -name parameter".into());
    }
    let _: Value = send(
        &a.http,
        "DELETE",
        &path(&a.name),
        None,
        &format!("Error deleting auth method {:?}", a.name),
        io,
    )?;
    let _ = writeln!(io.out, "Auth-method {:?} deleted successfully", a.name);
    Ok(())
}
