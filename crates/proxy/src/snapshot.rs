//! The policy a proxy enforces, as one immutable value: the destination's compiled
//! intentions, the providers they reference (with their keys), and the names of the
//! forwarded-payload headers to sanitize. A new config makes a new snapshot; requests
//! hold the snapshot they started with until they finish.
//!
//! The document a snapshot is built from is what the agent serves at
//! `GET /v1/tribune/proxy-snapshot/<service>` and what `-config FILE` holds:
//! `{"Service", "Protocol", "DefaultIntentionPolicy", "Entries": [...]}`. Entries go
//! through the model's one validation path.

use crate::keys::ProviderRuntime;
use hyper::header::HeaderName;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tribune_authz::{compile, is_http_like, CompileInput, IntentionTable, ANY_PROVIDER};
use tribune_model::jwt_provider::JwtLocation;
use tribune_model::mesh::RequestNormalization;
use tribune_model::JwtProvider;

/// The policy document a snapshot is built from (the agent serializes it, the
/// sidecar decodes it: one type, in `tribune-enforce`).
pub use tribune_enforce::PolicyDocument as SnapshotDoc;

/// A header name folded for look-alike comparison: lower case, `_` as `-`.
pub fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                char::from(b.to_ascii_lowercase())
            }
        })
        .collect()
}

/// A compiled, immutable policy.
pub struct Snapshot {
    /// Increases by one with every snapshot this proxy installs.
    pub version: u64,
    /// The agent's config index the document came from (0 for files and tests).
    pub index: u64,
    pub service: String,
    pub protocol: String,
    pub http: bool,
    pub table: IntentionTable,
    /// The providers the destination's intentions reference, in table order.
    pub providers: Vec<Arc<ProviderRuntime>>,
    /// Every configured provider's `Forwarding.HeaderName`: client-supplied copies are
    /// removed from every request so the upstream can trust them.
    pub forward_headers: Vec<HeaderName>,
    /// The `mesh` entry's request normalization (its defaults without one).
    pub normalization: RequestNormalization,
    /// Token locations of referenced providers with `Forward = false` (decisions.md
    /// #18): every value there is removed from an allowed request unless a provider
    /// with `Forward = true` verified that very token. Headers with their prefix.
    pub token_headers: Vec<(HeaderName, String)>,
    /// The same for query parameters (decoded names).
    pub token_params: Vec<String>,
    /// Headers the proxy sets or strips, folded (lower case, `_` as `-`): a client
    /// header that folds to one of these is removed (`x_jwt_payload` would reach a
    /// WSGI app as `x-jwt-payload`).
    pub owned_headers: Vec<String>,
    pub doc: SnapshotDoc,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("service", &self.service)
            .finish()
    }
}

/// Builds snapshots, keeping each provider's runtime (and so its fetched keys and
/// cache) across snapshots while the provider's entry is unchanged.
#[derive(Default)]
pub struct Builder {
    runtimes: Mutex<HashMap<String, Arc<ProviderRuntime>>>,
}

impl Builder {
    /// Compiles `doc`; the runtimes it returns as new still need
    /// [`ProviderRuntime::prepare`].
    pub fn build(
        &self,
        doc: SnapshotDoc,
        version: u64,
        index: u64,
    ) -> Result<(Snapshot, Vec<Arc<ProviderRuntime>>), String> {
        let intentions = doc.intentions();
        let providers = doc.providers();
        let http = is_http_like(&doc.protocol);
        let table = compile(&CompileInput {
            destination: &doc.service,
            entries: &intentions,
            providers: &providers,
            http,
            default: doc.default,
        })
        .map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let referenced = table.referenced_providers();
        let wanted: Vec<&JwtProvider> = if referenced.iter().any(|p| p == ANY_PROVIDER) {
            providers.clone()
        } else {
            providers
                .iter()
                .copied()
                .filter(|p| referenced.contains(&p.name))
                .collect()
        };
        let mut fresh = Vec::new();
        let mut runtimes = Vec::new();
        {
            let mut known = self
                .runtimes
                .lock()
                .map_err(|_| "provider registry poisoned".to_string())?;
            for p in wanted {
                let rt = match known.get(&p.name) {
                    Some(rt) if rt.provider == *p => rt.clone(),
                    _ => {
                        let rt = ProviderRuntime::new(p)
                            .map_err(|e| format!("jwt-provider {}: {e}", p.name))?;
                        known.insert(p.name.clone(), rt.clone());
                        fresh.push(rt.clone());
                        rt
                    }
                };
                runtimes.push(rt);
            }
            let names: Vec<&str> = runtimes.iter().map(|r| r.provider.name.as_str()).collect();
            known.retain(|name, _| names.contains(&name.as_str()));
        }
        let mut forward_headers = Vec::new();
        for p in &providers {
            if let Some(fw) = &p.forwarding {
                let name = HeaderName::from_bytes(fw.header_name.as_bytes()).map_err(|_| {
                    format!(
                        "jwt-provider {}: Forwarding.HeaderName {:?} is not a valid header name",
                        p.name, fw.header_name
                    )
                })?;
                if !forward_headers.contains(&name) {
                    forward_headers.push(name);
                }
            }
        }
        for h in &doc.forwarding_headers {
            if let Ok(name) = HeaderName::from_bytes(h.as_bytes()) {
                if !forward_headers.contains(&name) {
                    forward_headers.push(name);
                }
            }
        }
        let mut token_headers: Vec<(HeaderName, String)> = Vec::new();
        let mut token_params: Vec<String> = Vec::new();
        let mut owned_headers: Vec<String> =
            forward_headers.iter().map(|h| fold(h.as_str())).collect();
        for rt in &runtimes {
            let stripping = !tribune_jwt::locate::forwards_token(&rt.provider);
            for loc in tribune_jwt::locate::locations(&rt.provider) {
                match loc {
                    JwtLocation::Header(h) => {
                        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                            continue;
                        };
                        owned_headers.push(fold(name.as_str()));
                        let entry = (name, h.value_prefix.clone());
                        if stripping && !token_headers.contains(&entry) {
                            token_headers.push(entry);
                        }
                    }
                    JwtLocation::QueryParam(q) => {
                        if stripping && !token_params.contains(&q.name) {
                            token_params.push(q.name.clone());
                        }
                    }
                    JwtLocation::Cookie(_) => {}
                }
            }
        }
        owned_headers.sort();
        owned_headers.dedup();
        drop(intentions);
        drop(providers);
        Ok((
            Snapshot {
                version,
                index,
                service: doc.service.clone(),
                protocol: doc.protocol.clone(),
                http,
                table,
                providers: runtimes,
                token_headers,
                token_params,
                owned_headers,
                forward_headers,
                normalization: doc.normalization(),
                doc,
            },
            fresh,
        ))
    }
}
