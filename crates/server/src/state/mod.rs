//! The server's state layer: what handlers read instead of the raw store, kept
//! current from the store's notifications (issue #40).
//!
//! - [`config`]: the config entries, decoded once per change.
//! - [`tables`]: which blocking queries a write wakes (the waiters of its tables).
//! - [`documents`]: each watched service's policy document, rebuilt once per change
//!   that touches it and handed to all its waiting sidecars.
//! - [`write`]: the one read-check-write loop of guarded writes.
//! - [`catalog`]: the registrations decoded once per change, and each service's own
//!   index (what `health/connect` watchers wait on).
//! - [`typed`]: tables of one record type; [`acl`] and [`catalog`] name the typed
//!   tables of their areas (the CA's is `ca_api::CA`; config entries go through the
//!   decoded-entry cache of `entries`).

pub(crate) mod config;
pub(crate) mod documents;
pub(crate) mod tables;
pub(crate) mod typed;
pub(crate) mod write;

/// The ACL tables, typed.
pub(crate) mod acl {
    use super::typed::Table;
    use crate::acl::{Policy, Role, Token};

    pub(crate) const POLICIES: Table<Policy> = Table::new(crate::POLICY_TABLE);
    pub(crate) const TOKENS: Table<Token> = Table::new(crate::TOKEN_TABLE);
    pub(crate) const ROLES: Table<Role> = Table::new(crate::ROLE_TABLE);
    /// `bootstrapped` -> `true` once the bootstrap window has ended.
    pub(crate) const META: Table<bool> = Table::new(crate::ACL_META_TABLE);
    /// Auth methods by name.
    pub(crate) const AUTH_METHODS: Table<tribune_model::auth_method::AuthMethod> =
        Table::new(crate::AUTH_METHOD_TABLE);
    /// Binding rules by ID.
    pub(crate) const BINDING_RULES: Table<tribune_model::binding_rule::BindingRule> =
        Table::new(crate::BINDING_RULE_TABLE);
    /// OIDC sign-ins between auth-url and callback, by state.
    pub(crate) const OIDC_STATES: Table<crate::acl_api::oidc::Pending> =
        Table::new(crate::OIDC_STATE_TABLE);
}

pub(crate) mod catalog;
