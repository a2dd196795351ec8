//! Key sets the agent can load itself, for the explain API: inline (`Local.JWKS`) and
//! file (`Local.Filename`, read on the agent's disk). Remote key sets are fetched by
//! the proxies, not by the agent.

use std::sync::Arc;
use tribune_jwt::{Jwks, Verifier};
use tribune_model::jwt_provider::{JsonWebKeySet, LocalJwks};
use tribune_model::JwtProvider;

/// A verifier for `p`, or the reason the agent cannot build one.
pub(crate) fn verifier_for(p: &JwtProvider) -> Result<Verifier, String> {
    let json = match &p.json_web_key_set {
        JsonWebKeySet::Local(l @ LocalJwks::Inline(_)) => l
            .inline_json()
            .ok_or_else(|| "Jwks is not valid base64".to_string())?,
        JsonWebKeySet::Local(LocalJwks::Filename(f)) => {
            std::fs::read(f).map_err(|e| format!("Jwks file {f} cannot be read: {e}"))?
        }
        JsonWebKeySet::Remote(_) => {
            return Err("Jwks remote fetch is failed (the agent does not fetch remote key sets; explain tokens of local providers)".into())
        }
    };
    let jwks = Jwks::parse(&json).map_err(|e| e.to_string())?;
    Ok(Verifier::new(p, Arc::new(jwks)))
}
