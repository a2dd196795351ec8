//! What a token holds besides policies and roles (issue #43), checked with Consul's
//! rules and texts: service identities, node identities, templated policies, and its
//! expiry (`ExpirationTime`, or `ExpirationTTL` from its creation).

use crate::{ApiError, ApiResult};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tribune_model::api::{AclNodeIdentity, AclServiceIdentity, AclTemplatedPolicy, AclTokenBody};
use tribune_model::auth_method::TtlBounds;
use tribune_model::binding_rule::{check_templated, valid_identity_name};
use tribune_model::go;

/// A token's identities, checked and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Identities {
    pub services: Vec<AclServiceIdentity>,
    pub nodes: Vec<AclNodeIdentity>,
    pub templated: Vec<AclTemplatedPolicy>,
}

/// Consul's checks of a token body's identities (`local`: the token is local).
pub(crate) fn checked(body: &AclTokenBody, local: bool) -> ApiResult<Identities> {
    let bad = |m: String| Err(ApiError::bad_request(m));
    let mut out = Identities::default();
    for s in &body.service_identities {
        if s.service_name.is_empty() {
            return bad("Service identity is missing the service name field on this token".into());
        }
        if local && !s.datacenters.is_empty() {
            return bad(format!(
                "Service identity {:?} cannot specify a list of datacenters on a local token",
                s.service_name
            ));
        }
        if !valid_identity_name(&s.service_name) {
            return bad(format!(
                "Service identity {:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
                s.service_name
            ));
        }
        if !out
            .services
            .iter()
            .any(|o| o.service_name == s.service_name)
        {
            out.services.push(s.clone());
        }
    }
    for n in &body.node_identities {
        if n.node_name.is_empty() {
            return bad("Node identity is missing the node name field on this token".into());
        }
        if n.datacenter.is_empty() {
            return bad("Node identity is missing the datacenter field on this token".into());
        }
        if !valid_identity_name(&n.node_name) {
            return bad("Node identity has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed".into());
        }
        if !out.nodes.contains(n) {
            out.nodes.push(n.clone());
        }
    }
    for t in &body.templated_policies {
        check_templated(t).map_err(ApiError::bad_request)?;
        if !out.templated.contains(t) {
            out.templated.push(t.clone());
        }
    }
    Ok(out)
}

/// The `ExpirationTTL` of a body in nanoseconds: a Go duration or a number.
fn ttl_ns(v: &serde_json::Value) -> ApiResult<i64> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| ApiError::bad_request(format!("ExpirationTTL: {n} is not a duration"))),
        serde_json::Value::String(s) if s.is_empty() => Ok(0),
        serde_json::Value::String(s) => {
            go::parse_duration(s).map_err(|e| ApiError::bad_request(format!("ExpirationTTL: {e}")))
        }
        serde_json::Value::Null => Ok(0),
        other => Err(ApiError::bad_request(format!(
            "ExpirationTTL: {other} is not a duration"
        ))),
    }
}

pub(crate) fn parse_time(text: &str, what: &str) -> ApiResult<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        ApiError::bad_request(format!("{what}: {text:?} is not an RFC 3339 time: {e}"))
    })
}

pub(crate) fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The `ExpirationTime` of a token being created at `created` (Consul's rules and
/// texts): from `ExpirationTTL`, or the body's own time, within the agent's bounds.
pub(crate) fn expiry_on_create(
    body: &AclTokenBody,
    created: OffsetDateTime,
    bounds: TtlBounds,
) -> ApiResult<Option<String>> {
    let ttl = body
        .expiration_ttl
        .as_ref()
        .map(ttl_ns)
        .transpose()?
        .unwrap_or(0);
    let given = body.expiration_time.as_deref().filter(|t| !t.is_empty());
    let at = if ttl != 0 {
        if ttl < 0 {
            return Err(ApiError::bad_request(format!(
                "Token Expiration TTL '{}' should be > 0",
                go::format_duration(ttl)
            )));
        }
        if given.is_some() {
            return Err(ApiError::bad_request(
                "Token Expiration TTL and Expiration Time cannot both be set",
            ));
        }
        created + time::Duration::nanoseconds(ttl)
    } else {
        match given {
            None => return Ok(None),
            Some(t) => parse_time(t, "ExpirationTime")?,
        }
    };
    if at < created {
        return Err(ApiError::bad_request(
            "ExpirationTime cannot be before CreateTime",
        ));
    }
    let ns = i64::try_from((at - created).whole_nanoseconds()).unwrap_or(i64::MAX);
    if ns > bounds.max_ns {
        return Err(ApiError::bad_request(format!(
            "ExpirationTime cannot be more than {} in the future (was {})",
            go::format_duration(bounds.max_ns),
            go::format_duration(ns)
        )));
    }
    if ns < bounds.min_ns {
        return Err(ApiError::bad_request(format!(
            "ExpirationTime cannot be less than {} in the future (was {})",
            go::format_duration(bounds.min_ns),
            go::format_duration(ns)
        )));
    }
    Ok(Some(format_time(at)))
}

/// An update may repeat a token's expiry, never change it (Consul's rule).
pub(crate) fn expiry_on_update(
    body: &AclTokenBody,
    id: &str,
    stored: Option<&str>,
) -> ApiResult<()> {
    let changed = || {
        Err(ApiError::bad_request(format!(
            "Cannot change expiration time of {id}"
        )))
    };
    if body
        .expiration_ttl
        .as_ref()
        .map(ttl_ns)
        .transpose()?
        .unwrap_or(0)
        != 0
    {
        return changed();
    }
    match (
        body.expiration_time.as_deref().filter(|t| !t.is_empty()),
        stored,
    ) {
        (None, _) => Ok(()),
        (Some(_), None) => changed(),
        (Some(given), Some(stored)) => {
            if parse_time(given, "ExpirationTime")? == parse_time(stored, "ExpirationTime")? {
                Ok(())
            } else {
                changed()
            }
        }
    }
}
