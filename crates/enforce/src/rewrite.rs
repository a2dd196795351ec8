//! What an allowed request loses and gains before it reaches the local service
//! (decisions.md #10, #18): header names with `_` when they are dropped; client
//! copies and look-alikes of the proxy's own headers; every token value no
//! forwarding provider verified (headers and query parameters; cookies are never
//! stripped); then the `Forwarding` headers of verified providers. The caller
//! removes hop-by-hop headers first, so `Connection` can never name a header the
//! rewrite adds.

use crate::evaluate::{has_underscore_name, Decided};
use crate::policy::{fold, Policy};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use tribune_jwt::locate::{holds_token, percent_decode, token_in_header, Outcome};

/// The query string without the token parameters (`names`, compared after decoding,
/// as token lookup compares them) whose value is not in `keep`; `None` when nothing
/// is removed.
pub fn strip_params(query: &str, names: &[String], keep: &[String]) -> Option<String> {
    let mut removed = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            // Decoded without an allocation unless escaped.
            let name = percent_decode(k);
            let token_param = names.iter().any(|n| *n == *name);
            let strip = token_param && !keep.iter().any(|t| *t == *percent_decode(v));
            removed |= strip;
            !strip
        })
        .collect();
    removed.then(|| kept.join("&"))
}

/// Removes the values of a token header that hold a token (the header's prefix, as
/// token lookup reads it) unless that token is in `keep`.
fn strip_token_values(headers: &mut HeaderMap, name: &HeaderName, prefix: &str, keep: &[String]) {
    // On the value's bytes, as token lookup reads it: a value that is not UTF-8
    // still loses its token (decisions.md #18).
    let is_stripped = |v: &HeaderValue| {
        let v = v.as_bytes();
        if keep.is_empty() {
            // The usual case (no provider forwards): no token copied to decide.
            holds_token(v, prefix)
        } else {
            token_in_header(v, prefix).is_some_and(|t| !keep.iter().any(|k| k == t))
        }
    };
    let (mut values, mut stripped) = (0usize, 0usize);
    for v in headers.get_all(name) {
        values += 1;
        stripped += usize::from(is_stripped(v));
    }
    if stripped == 0 {
        return;
    }
    if stripped == values {
        // The usual case (one value, holding the token): no copy of what stays.
        headers.remove(name);
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(name)
        .iter()
        .filter(|v| !is_stripped(v))
        .cloned()
        .collect();
    headers.remove(name);
    for v in kept {
        headers.append(name.clone(), v);
    }
}

fn drop_underscore_names(headers: &mut HeaderMap) {
    if !has_underscore_name(headers) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Removes client headers that are the proxy's own up to case and `_`/`-` (`owned`
/// holds folded names). Only names with `_` can be look-alikes: header names arrive
/// in lower case, and exact copies are removed by name.
fn remove_lookalikes(headers: &mut HeaderMap, owned: &[String]) {
    if !has_underscore_name(headers) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_') && owned.contains(&fold(k.as_str())))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

impl Policy {
    /// Rewrites an allowed request's headers; returns the new query when token
    /// parameters were removed from `query`.
    pub fn rewrite(
        &self,
        decided: &Decided<'_>,
        headers: &mut HeaderMap,
        query: Option<&str>,
    ) -> Option<String> {
        if decided.drop_underscores {
            drop_underscore_names(headers);
        }
        for name in &self.forward_headers {
            headers.remove(name);
        }
        remove_lookalikes(headers, &self.owned_headers);
        for (name, prefix) in &self.token_headers {
            strip_token_values(headers, name, prefix, &decided.forwarded_tokens);
        }
        for (name, value) in forwarded_headers(decided) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        for (name, value) in self.claim_values(decided) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name.clone(), v);
            }
        }
        query
            .filter(|_| !self.token_params.is_empty())
            .and_then(|q| strip_params(q, &self.token_params, &decided.forwarded_tokens))
    }
}

impl Policy {
    /// Whether [`Policy::rewrite`] may remove or set header `name` (it only touches
    /// names with `_`, the providers' token headers, their `Forwarding` headers and
    /// their `ClaimToHeaders`): a caller that knew whether `name` was there before
    /// the rewrite still knows after it when this is false.
    pub fn rewrite_touches(&self, name: &HeaderName) -> bool {
        name.as_str().contains('_')
            || self.forward_headers.contains(name)
            || self.token_headers.iter().any(|(n, _)| n == name)
            || self.claim_headers.iter().any(|(_, _, n)| n == name)
    }

    /// The `ClaimToHeaders` values the rewrite sets: strings as they are, numbers and
    /// booleans as JSON text; arrays, objects and absent claims set nothing.
    pub fn claim_values<'a>(&'a self, decided: &Decided<'_>) -> Vec<(&'a HeaderName, String)> {
        if self.claim_headers.is_empty() {
            return Vec::new();
        }
        self.claim_headers
            .iter()
            .filter_map(|(i, path, name)| {
                let Some(Outcome::Valid { payload, .. }) = decided.outcomes.get(*i) else {
                    return None;
                };
                let value = match payload.at(path)? {
                    serde_json::Value::String(s) => s,
                    v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                        v.to_string()
                    }
                    _ => return None,
                };
                Some((name, value))
            })
            .collect()
    }
}

/// The `Forwarding` headers the rewrite sets: `(name, value)` per verified provider.
pub fn forwarded_headers<'a>(decided: &'a Decided<'_>) -> impl Iterator<Item = (&'a str, &'a str)> {
    decided.outcomes.iter().filter_map(|o| match o {
        Outcome::Valid {
            forward_header: Some((name, value)),
            ..
        } => Some((name.as_str(), value.as_str())),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parameters_are_compared_after_decoding() {
        let names = vec!["access_token".to_string()];
        assert_eq!(
            strip_params("a=1&acc%65ss_token=x&b=2", &names, &[]).as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(strip_params("a=1", &names, &[]), None);
        assert_eq!(
            strip_params(
                "access_token=keep&access_token=drop",
                &names,
                &["keep".into()]
            )
            .as_deref(),
            Some("access_token=keep")
        );
    }
}
