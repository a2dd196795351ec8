//! The `mesh` config entry, the part Tribune enforces: how every sidecar normalizes
//! incoming HTTP requests before deciding (`HTTP.Incoming.RequestNormalization`).
//! Consul's names, values and messages; Tribune's default for escaped separators is
//! stricter than Consul's (decisions.md #17).

use crate::entry::{validate_meta, Meta};
use crate::error::ValidationErrors;
use crate::wire;
use serde::Serialize;

/// The name of the only `mesh` entry.
pub const MESH_NAME: &str = "mesh";

/// `PathWithEscapedSlashesAction`: what to do with `%2F`, `%2f`, `%5C`, `%5c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum EscapedSlashes {
    /// Unset or `IMPLEMENTATION_SPECIFIC_DEFAULT`: Tribune rejects (400); Envoy keeps.
    #[default]
    Default,
    KeepUnchanged,
    RejectRequest,
    UnescapeAndRedirect,
    UnescapeAndForward,
}

impl EscapedSlashes {
    /// In Consul's order (its error message lists them so).
    pub const ALL: [EscapedSlashes; 5] = [
        EscapedSlashes::Default,
        EscapedSlashes::KeepUnchanged,
        EscapedSlashes::RejectRequest,
        EscapedSlashes::UnescapeAndRedirect,
        EscapedSlashes::UnescapeAndForward,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EscapedSlashes::Default => "IMPLEMENTATION_SPECIFIC_DEFAULT",
            EscapedSlashes::KeepUnchanged => "KEEP_UNCHANGED",
            EscapedSlashes::RejectRequest => "REJECT_REQUEST",
            EscapedSlashes::UnescapeAndRedirect => "UNESCAPE_AND_REDIRECT",
            EscapedSlashes::UnescapeAndForward => "UNESCAPE_AND_FORWARD",
        }
    }
}

/// `HeadersWithUnderscoresAction`: what to do with a header whose name has `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Underscores {
    #[default]
    Allow,
    RejectRequest,
    DropHeader,
}

impl Underscores {
    pub const ALL: [Underscores; 3] = [
        Underscores::Allow,
        Underscores::RejectRequest,
        Underscores::DropHeader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Underscores::Allow => "ALLOW",
            Underscores::RejectRequest => "REJECT_REQUEST",
            Underscores::DropHeader => "DROP_HEADER",
        }
    }
}

/// `HTTP.Incoming.RequestNormalization`; the default value is what every sidecar
/// does when no `mesh` entry exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize)]
pub struct RequestNormalization {
    #[serde(
        rename = "InsecureDisablePathNormalization",
        skip_serializing_if = "crate::entry::is_false"
    )]
    pub insecure_disable_path_normalization: bool,
    #[serde(
        rename = "MergeSlashes",
        skip_serializing_if = "crate::entry::is_false"
    )]
    pub merge_slashes: bool,
    #[serde(
        rename = "PathWithEscapedSlashesAction",
        serialize_with = "ser_escaped",
        skip_serializing_if = "is_default_escaped"
    )]
    pub path_with_escaped_slashes_action: EscapedSlashes,
    #[serde(
        rename = "HeadersWithUnderscoresAction",
        serialize_with = "ser_underscores",
        skip_serializing_if = "is_default_underscores"
    )]
    pub headers_with_underscores_action: Underscores,
}

fn ser_escaped<S: serde::Serializer>(v: &EscapedSlashes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}
fn ser_underscores<S: serde::Serializer>(v: &Underscores, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}
fn is_default_escaped(v: &EscapedSlashes) -> bool {
    *v == EscapedSlashes::Default
}
fn is_default_underscores(v: &Underscores) -> bool {
    *v == Underscores::Allow
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MeshHttpIncoming {
    #[serde(rename = "RequestNormalization")]
    pub request_normalization: RequestNormalization,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MeshHttp {
    #[serde(rename = "Incoming")]
    pub incoming: MeshHttpIncoming,
}

/// A validated `mesh` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Mesh {
    #[serde(rename = "HTTP")]
    pub http: MeshHttp,
    #[serde(rename = "Meta", skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
}

impl Mesh {
    pub fn request_normalization(&self) -> RequestNormalization {
        self.http.incoming.request_normalization
    }
}

const NORMALIZATION: &str = "HTTP.Incoming.RequestNormalization";

fn parse_choice<T: Copy>(
    value: Option<String>,
    all: &[T],
    name: fn(T) -> &'static str,
    type_name: &str,
    field: &str,
    errs: &mut ValidationErrors,
) -> T {
    let value = value.unwrap_or_default();
    if value.is_empty() {
        return all[0];
    }
    if let Some(v) = all.iter().copied().find(|v| name(*v) == value) {
        return v;
    }
    let list: Vec<&str> = all.iter().map(|v| name(*v)).collect();
    errs.push(
        format!("{NORMALIZATION}.{field}"),
        format!(
            "error in HTTP incoming request normalization configuration: no matching {type_name} value found for {value}, please specify one of [{}]",
            list.join(", ")
        ),
    );
    all[0]
}

/// Consul's `MeshConfigEntry.Validate` for the fields Tribune keeps, in its order.
pub(crate) fn validate(w: wire::Mesh) -> Result<Mesh, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let meta = w.meta.unwrap_or_default();
    validate_meta(&meta, "Meta", &mut errs);
    let rn = w
        .http
        .and_then(|h| h.incoming)
        .and_then(|i| i.request_normalization)
        .unwrap_or_default();
    let path_with_escaped_slashes_action = parse_choice(
        rn.path_with_escaped_slashes_action,
        &EscapedSlashes::ALL,
        EscapedSlashes::as_str,
        "PathWithEscapedSlashesAction",
        "PathWithEscapedSlashesAction",
        &mut errs,
    );
    let headers_with_underscores_action = parse_choice(
        rn.headers_with_underscores_action,
        &Underscores::ALL,
        Underscores::as_str,
        "HeadersWithUnderscoresAction",
        "HeadersWithUnderscoresAction",
        &mut errs,
    );
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Mesh {
        http: MeshHttp {
            incoming: MeshHttpIncoming {
                request_normalization: RequestNormalization {
                    insecure_disable_path_normalization: rn
                        .insecure_disable_path_normalization
                        .unwrap_or(false),
                    merge_slashes: rn.merge_slashes.unwrap_or(false),
                    path_with_escaped_slashes_action,
                    headers_with_underscores_action,
                },
            },
        },
        meta,
    })
}

#[cfg(test)]
mod tests {
    use crate::{parse_entry, ConfigEntry};

    #[test]
    fn consul_files_decode_and_bad_actions_get_consuls_text() {
        let e = parse_entry(
            r#"Kind = "mesh"
HTTP {
  Incoming {
    RequestNormalization {
      MergeSlashes = true
      path_with_escaped_slashes_action = "UNESCAPE_AND_FORWARD"
      HeadersWithUnderscoresAction = "DROP_HEADER"
    }
  }
}"#,
        )
        .unwrap();
        let ConfigEntry::Mesh(m) = &e else {
            panic!("{e:?}")
        };
        let rn = m.request_normalization();
        assert!(rn.merge_slashes);
        assert_eq!(
            rn.path_with_escaped_slashes_action,
            super::EscapedSlashes::UnescapeAndForward
        );
        assert_eq!(e.name(), "mesh");
        assert_eq!(
            e.to_canonical_string(),
            r#"{"Kind":"mesh","HTTP":{"Incoming":{"RequestNormalization":{"MergeSlashes":true,"PathWithEscapedSlashesAction":"UNESCAPE_AND_FORWARD","HeadersWithUnderscoresAction":"DROP_HEADER"}}}}"#
        );
        let err = parse_entry(
            r#"{"Kind":"mesh","HTTP":{"Incoming":{"RequestNormalization":{"PathWithEscapedSlashesAction":"DEFAULT"}}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "error in HTTP incoming request normalization configuration: no matching PathWithEscapedSlashesAction value found for DEFAULT, please specify one of [IMPLEMENTATION_SPECIFIC_DEFAULT, KEEP_UNCHANGED, REJECT_REQUEST, UNESCAPE_AND_REDIRECT, UNESCAPE_AND_FORWARD]"
        );
        let err = parse_entry(r#"{"Kind":"mesh","Name":"mesh"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 error occurred:\n\t* invalid config key \"Name\"\n\n"
        );
        // Consul's default value spelled out is accepted and is the default.
        let e = parse_entry(
            r#"{"Kind":"mesh","HTTP":{"Incoming":{"RequestNormalization":{"PathWithEscapedSlashesAction":"IMPLEMENTATION_SPECIFIC_DEFAULT","HeadersWithUnderscoresAction":"ALLOW"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            e.to_canonical_string(),
            r#"{"Kind":"mesh","HTTP":{"Incoming":{"RequestNormalization":{}}}}"#
        );
    }
}
