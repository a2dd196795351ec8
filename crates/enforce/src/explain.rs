//! Explain: the sidecar's answer to a described request, with why.
//!
//! [`ExplainRequest`] is the body of `POST /v1/connect/intentions/explain` and what
//! `tribune intention check` sends; [`ExplainResponse`] is the answer. Both sides use
//! these types. A described request becomes the same [`Request`] the sidecar sees
//! ([`ExplainRequest::describe`]: real header names and values, the token shorthand
//! as `Authorization: Bearer`, cookies as one `Cookie` header), and [`explain`] runs
//! [`Policy::evaluate`] on it: the answer is the sidecar's by construction.

use crate::evaluate::{Evaluation, Options, Request, Verify};
use crate::policy::Policy;
use crate::rewrite::forwarded_headers;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use tribune_authz::{Caller, Decision, NotFired, Reason};
use tribune_jwt::locate::Outcome;
use tribune_model::go;

/// A request to explain. Only `Destination` is required; no `Source` (or an empty
/// one) is a caller outside the mesh, on the sidecar's edge listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExplainRequest {
    /// `name`, `default/name` or `peer:<peer>/name`.
    #[serde(rename = "Source", default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(rename = "Destination", default)]
    pub destination: String,
    /// `GET` when absent.
    #[serde(rename = "Method", default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The request target: path and query, as sent (`/` when absent).
    #[serde(rename = "Path", default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Header values by name; a name may have several values (kept in order).
    #[serde(
        rename = "Headers",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Cookies, `name=value`, sent as one `Cookie` header.
    #[serde(rename = "Cookies", default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
    /// Shorthand for an `Authorization: Bearer <Token>` header.
    #[serde(rename = "Token", default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Explain for a sidecar started with `-merge-slashes`.
    #[serde(
        rename = "MergeSlashes",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub merge_slashes: bool,
}

/// The intention that decided (or came closest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentionRef {
    #[serde(rename = "SourceName")]
    pub source_name: String,
    #[serde(rename = "SourcePeer", default)]
    pub source_peer: String,
    #[serde(rename = "DestinationName")]
    pub destination_name: String,
    #[serde(rename = "Precedence")]
    pub precedence: u32,
}

impl IntentionRef {
    /// `source -> destination (precedence N)`, as the access log names it.
    pub fn describe(&self) -> String {
        let src = if self.source_peer.is_empty() {
            self.source_name.clone()
        } else {
            format!("{} (peer {})", self.source_name, self.source_peer)
        };
        format!(
            "{src} -> {} (precedence {})",
            self.destination_name, self.precedence
        )
    }
}

/// What one provider concluded about the request's tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenReport {
    #[serde(rename = "Provider")]
    pub provider: String,
    /// `valid`, `missing`, `issuer_unknown` (a token for another issuer), or why the
    /// token failed (`malformed`, `expired`, `bad_signature`, ...).
    #[serde(rename = "Outcome")]
    pub outcome: String,
    /// The short reason the caller is told (`Jwt is expired`).
    #[serde(rename = "Error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The verified token's claims.
    #[serde(rename = "Claims", default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
}

/// The sidecar's answer to an [`ExplainRequest`], with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainResponse {
    #[serde(rename = "Allowed")]
    pub allowed: bool,
    /// `allow` or `deny`.
    #[serde(rename = "Decision")]
    pub decision: String,
    /// The access log's `reason`: a decision code (`intention`, `jwt_missing`, ...) or
    /// why the request was refused before deciding (`escaped_separator`, ...).
    #[serde(rename = "ReasonCode")]
    pub reason_code: String,
    /// Why, in a sentence.
    #[serde(rename = "Reason")]
    pub reason: String,
    #[serde(rename = "Intention")]
    pub intention: Option<IntentionRef>,
    /// Index of the deciding permission in the intention's `Permissions`.
    #[serde(rename = "Permission")]
    pub permission: Option<usize>,
    /// The path matched (and forwarded when allowed).
    #[serde(rename = "NormalizedPath")]
    pub normalized_path: String,
    /// The HTTP status the caller gets: 200 stands for "forwarded to the service";
    /// `None` for a non-HTTP destination (the connection is forwarded or closed).
    #[serde(rename = "Status")]
    pub status: Option<u16>,
    #[serde(rename = "Body")]
    pub body: Option<String>,
    #[serde(rename = "WWWAuthenticate")]
    pub www_authenticate: Option<String>,
    /// The `Location` of a redirect.
    #[serde(rename = "Location", default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Token outcomes per provider the destination's intentions reference.
    #[serde(rename = "Tokens", default)]
    pub tokens: Vec<TokenReport>,
    /// Headers the sidecar sets on the forwarded request (`Forwarding`).
    #[serde(rename = "ForwardedHeaders", default)]
    pub forwarded_headers: BTreeMap<String, String>,
}

/// A described request, checked and in the sidecar's types.
#[derive(Debug, Clone)]
pub struct Described {
    /// `(name, peer)`; `None` for the edge.
    pub caller: Option<(String, String)>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
}

impl Described {
    /// The request as [`Policy::evaluate`] takes it.
    pub fn request(&self) -> Request<'_, '_> {
        Request {
            caller: self
                .caller
                .as_ref()
                .map(|(name, peer)| Caller { name, peer }),
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
        }
    }
}

/// A service reference: `name`, `default/name`, `default/default/name` or
/// `peer:<peer>/name`, as `(name, peer)`. `what` names the field in errors.
pub fn parse_service_ref(s: &str, what: &str) -> Result<(String, String), String> {
    if let Some(rest) = s.strip_prefix("peer:") {
        return match rest.split_once('/') {
            Some((peer, name)) if !peer.is_empty() && !name.is_empty() => {
                Ok((name.into(), peer.into()))
            }
            _ => Err(format!(
                "invalid {what} {}: expected peer:<peer>/<name>",
                go::quote(s)
            )),
        };
    }
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [name] | ["default", name] | ["default", "default", name] if !name.is_empty() => {
            Ok(((*name).into(), String::new()))
        }
        _ => Err(format!(
            "invalid {what} {}: namespaces and partitions are a Consul Enterprise feature",
            go::quote(s)
        )),
    }
}

impl ExplainRequest {
    /// Adds a header given as `Name: value` (the CLI's `-header`, `/check`'s
    /// `header=`); a repeated name keeps every value, in order.
    pub fn add_header(&mut self, line: &str) -> Result<(), String> {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            format!(
                "invalid header {}: expected \"Name: value\"",
                go::quote(line)
            )
        })?;
        self.headers
            .entry(name.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
        Ok(())
    }

    /// Decodes a request body the way Consul's decoder reads keys (any case,
    /// snake_case; a single header value for a list); unknown keys are refused.
    pub fn from_json(v: &Value) -> Result<ExplainRequest, String> {
        tribune_model::decode::from_value(v, "").map_err(|e| e.to_string())
    }

    /// Checks the request and builds what the sidecar would receive; every problem
    /// is reported with its field.
    pub fn describe(&self) -> Result<Described, String> {
        let mut errors = Vec::new();
        if self.destination.is_empty() {
            errors.push("Destination: required".to_string());
        }
        let caller = match self.source.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match parse_service_ref(s, "Source") {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        let method = self.method.clone().unwrap_or_else(|| "GET".into());
        if http::Method::from_bytes(method.as_bytes()).is_err() {
            errors.push(format!("Method: {method:?} is not an HTTP method"));
        }
        let target = self.path.clone().unwrap_or_else(|| "/".into());
        let (path, query) = match target.parse::<http::uri::PathAndQuery>() {
            Ok(pq) if pq.path().starts_with('/') => {
                (pq.path().to_string(), pq.query().map(str::to_string))
            }
            _ => {
                errors.push(format!(
                    "Path: {target:?} is not a request target (an absolute path, with an optional ?query)"
                ));
                (String::from("/"), None)
            }
        };
        let mut headers = HeaderMap::new();
        for (name, values) in &self.headers {
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                errors.push(format!("Headers: {name:?} is not a header name"));
                continue;
            };
            for v in values {
                match HeaderValue::from_str(v) {
                    Ok(v) => {
                        headers.append(n.clone(), v);
                    }
                    Err(_) => errors.push(format!(
                        "Headers.{name}: {v:?} is not a header value (control characters or non-ASCII)"
                    )),
                }
            }
        }
        if !self.cookies.is_empty() {
            for c in &self.cookies {
                if !c.contains('=') {
                    errors.push(format!("Cookies: {c:?} must be name=value"));
                }
            }
            match HeaderValue::from_str(&self.cookies.join("; ")) {
                Ok(v) => {
                    headers.append(COOKIE, v);
                }
                Err(_) => errors.push("Cookies: not a header value".to_string()),
            }
        }
        if let Some(t) = self.token.as_deref().filter(|t| !t.is_empty()) {
            match HeaderValue::from_str(&format!("Bearer {}", t.trim())) {
                Ok(v) => {
                    headers.append(AUTHORIZATION, v);
                }
                Err(_) => errors.push("Token: not a header value".to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(Described {
            caller,
            method,
            path,
            query,
            headers,
        })
    }
}

/// The deciding permission of a decision (fired, or the closest one's).
fn permission_of(decision: &Decision) -> Option<usize> {
    match &decision.reason {
        Reason::Fired { permission, .. } => *permission,
        Reason::Default {
            closest: Some((_, NotFired::Jwt { permission, .. })),
        } => *permission,
        Reason::Default {
            closest: Some((_, NotFired::PermissionSameAsDefault { permission })),
        } => Some(*permission),
        Reason::Default { .. } => None,
    }
}

fn intention_of(policy: &Policy, decision: &Decision) -> Option<IntentionRef> {
    let info = policy.table.intention(decision.intention()?)?;
    Some(IntentionRef {
        source_name: info.source.clone(),
        source_peer: info.source_peer.clone(),
        destination_name: info.destination.clone(),
        precedence: info.precedence,
    })
}

fn token_reports(policy: &Policy, outcomes: &[Outcome]) -> Vec<TokenReport> {
    policy
        .providers
        .iter()
        .zip(outcomes)
        .map(|(p, o)| match o {
            Outcome::Missing => TokenReport {
                provider: p.name.clone(),
                outcome: "missing".into(),
                error: None,
                claims: None,
            },
            Outcome::Stray(tribune_jwt::Stray::OtherIssuer(iss)) => TokenReport {
                provider: p.name.clone(),
                outcome: "issuer_unknown".into(),
                error: Some(match iss {
                    Some(iss) => format!(
                        "a token was sent with iss {iss:?}, but this provider's Issuer is {:?}",
                        p.issuer
                    ),
                    None => format!(
                        "a token without iss was sent, but this provider's Issuer is {:?}",
                        p.issuer
                    ),
                }),
                claims: None,
            },
            Outcome::Stray(tribune_jwt::Stray::Elsewhere(at)) => TokenReport {
                provider: p.name.clone(),
                outcome: "wrong_location".into(),
                error: Some(format!(
                    "no token where this provider looks; one with its Issuer was sent in {at}"
                )),
                claims: None,
            },
            Outcome::Stray(tribune_jwt::Stray::Malformed(m)) => TokenReport {
                provider: p.name.clone(),
                outcome: "malformed".into(),
                error: Some((*m).into()),
                claims: None,
            },
            Outcome::Invalid(e) => TokenReport {
                provider: p.name.clone(),
                outcome: e.code().as_str().into(),
                error: Some(e.text().into()),
                claims: None,
            },
            Outcome::Valid { payload, .. } => TokenReport {
                provider: p.name.clone(),
                outcome: "valid".into(),
                error: None,
                claims: Some(payload.to_value()),
            },
        })
        .collect()
}

/// The answer for an evaluated HTTP request.
pub fn answer(policy: &Policy, request_path: &str, evaluation: &Evaluation<'_>) -> ExplainResponse {
    match evaluation {
        Evaluation::Refused(r) => ExplainResponse {
            allowed: false,
            decision: "deny".into(),
            reason_code: r.refusal.as_str().into(),
            reason: r.refusal.explain().into(),
            intention: None,
            permission: None,
            normalized_path: request_path.to_string(),
            status: Some(r.refusal.status()),
            body: Some(r.refusal.body().to_string()).filter(|b| !b.is_empty()),
            www_authenticate: None,
            location: r.location.clone(),
            tokens: Vec::new(),
            forwarded_headers: BTreeMap::new(),
        },
        Evaluation::Decided(d) => {
            let deny = d.deny_response(policy);
            ExplainResponse {
                allowed: d.decision.allowed(),
                decision: d.decision.action.as_str().into(),
                reason_code: d.decision.code().as_str().into(),
                reason: policy.table.explain(&d.decision),
                intention: intention_of(policy, &d.decision),
                permission: permission_of(&d.decision),
                normalized_path: d.path.to_string(),
                status: Some(deny.as_ref().map_or(200, |r| r.status)),
                body: deny.as_ref().map(|r| r.body.to_string()),
                www_authenticate: deny.and_then(|r| r.www_authenticate()),
                location: None,
                tokens: token_reports(policy, &d.outcomes),
                forwarded_headers: if d.decision.allowed() {
                    forwarded_headers(d)
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .chain(
                            policy
                                .claim_values(d)
                                .into_iter()
                                .map(|(k, v)| (k.as_str().to_string(), v)),
                        )
                        .collect()
                } else {
                    BTreeMap::new()
                },
            }
        }
    }
}

/// The answer for a connection to a non-HTTP destination (decided on identity).
pub fn answer_connection(policy: &Policy, decision: &Decision) -> ExplainResponse {
    ExplainResponse {
        allowed: decision.allowed(),
        decision: decision.action.as_str().into(),
        reason_code: decision.code().as_str().into(),
        reason: policy.table.explain(decision),
        intention: intention_of(policy, decision),
        permission: None,
        normalized_path: String::new(),
        status: None,
        body: None,
        www_authenticate: None,
        location: None,
        tokens: Vec::new(),
        forwarded_headers: BTreeMap::new(),
    }
}

/// Explains `req` against `policy`: what the sidecar of the destination answers,
/// computed by the function the sidecar calls.
pub async fn explain<V: Verify + ?Sized>(
    policy: &Policy,
    req: &Described,
    options: Options,
    now: i64,
    keys: &V,
) -> ExplainResponse {
    let request = req.request();
    if !policy.http {
        return answer_connection(policy, &policy.decide_connection(request.caller));
    }
    let evaluation = policy.evaluate(&request, options, now, keys).await;
    answer(policy, &req.path, &evaluation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_described_request_keeps_repeated_headers_and_names_bad_fields() {
        let req = ExplainRequest::from_json(&json!({
            "source": "web", "Destination": "api", "Path": "/a?x=1",
            "Headers": {"X-A": ["1", "2"], "x-b": "3"}, "Cookies": ["s=t"], "Token": "a.b.c",
        }))
        .expect("decodes");
        let d = req.describe().expect("valid");
        assert_eq!(d.caller, Some(("web".into(), String::new())));
        assert_eq!((d.path.as_str(), d.query.as_deref()), ("/a", Some("x=1")));
        let xa: Vec<&str> = d
            .headers
            .get_all("x-a")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(d.headers["x-b"], "3");
        assert_eq!(d.headers["cookie"], "s=t");
        assert_eq!(d.headers["authorization"], "Bearer a.b.c");

        let err = ExplainRequest::from_json(&json!({
            "Source": "ns/x/y", "Method": "G ET", "Path": "nope",
            "Headers": {"bad name": "1", "x": "\u{1}"},
        }))
        .expect("decodes")
        .describe()
        .unwrap_err();
        for field in [
            "Destination: required",
            "invalid Source",
            "Method:",
            "Path:",
            "Headers: \"bad name\"",
            "Headers.x:",
        ] {
            assert!(err.contains(field), "{field} in {err}");
        }
        let err =
            ExplainRequest::from_json(&json!({"Destination": "api", "Bogus": 1})).unwrap_err();
        assert!(err.contains("invalid config key \"Bogus\""), "{err}");
    }

    #[test]
    fn service_refs_parse_like_consuls_api() {
        assert_eq!(
            parse_service_ref("default/web", "Source"),
            Ok(("web".into(), String::new()))
        );
        assert_eq!(
            parse_service_ref("peer:east/web", "Source"),
            Ok(("web".into(), "east".into()))
        );
        assert!(parse_service_ref("a/b", "Source").is_err());
        assert!(parse_service_ref("peer:east", "Source").is_err());
    }
}
