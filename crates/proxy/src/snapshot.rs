//! The policy a proxy enforces, as one immutable value: the destination's compiled
//! intentions, the providers they reference (with their keys), and the names of the
//! forwarded-payload headers to sanitize. A new config makes a new snapshot; requests
//! hold the snapshot they started with until they finish.
//!
//! The document a snapshot is built from is what the agent serves at
//! `GET /v1/tribune/proxy-snapshot/<service>` and what `-config FILE` holds:
//! `{"Service", "Protocol", "DefaultIntentionPolicy", "Entries": [...]}`. Entries go
//! through the model's one validation path.

use hyper::header::{HeaderMap, HeaderValue};
use std::ops::Deref;
use std::sync::Arc;
use tribune_authz::Challenge;
use tribune_enforce::Policy;
use tribune_jwks::{ProviderRuntime, Registry, Runtimes};

/// The policy document a snapshot is built from (the agent serializes it, the
/// sidecar decodes it: one type, in `tribune-enforce`).
pub use tribune_enforce::PolicyDocument as SnapshotDoc;

/// A compiled, immutable policy with the key runtimes of its providers. Derefs to
/// the [`Policy`] (table, providers, rewrite lists), compiled by the enforcement
/// engine exactly as the agent's explain compiles it.
pub struct Snapshot {
    /// Increases by one with every snapshot this proxy installs.
    pub version: u64,
    /// The agent's config index the document came from (0 for files and tests).
    pub index: u64,
    pub policy: Policy,
    /// The key runtimes of [`Policy::providers`], in the same order.
    pub runtimes: Vec<Arc<ProviderRuntime>>,
    /// A staged candidate evaluated beside the policy, never enforced.
    pub shadow: Option<Shadow>,
    /// How this snapshot's requests are recorded for replay.
    pub replay_plan: crate::replay::Plan,
    /// The headers of a 401 with each [`Challenge`] for this service
    /// (`Content-Type` and `WWW-Authenticate`), made once: a 401 clones them, copying
    /// no strings and hashing nothing.
    pub challenges: [HeaderMap; Challenge::ALL.len()],
    pub doc: SnapshotDoc,
}

/// The 401 headers of every challenge for `service` (in [`Challenge::ALL`] order).
fn challenges(service: &str) -> [HeaderMap; Challenge::ALL.len()] {
    Challenge::ALL.map(|c| {
        let value = HeaderValue::from_str(&c.header_value(service))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        crate::http::plain_with(hyper::header::WWW_AUTHENTICATE, value)
    })
}

impl Snapshot {
    /// The headers of a 401 with `challenge`.
    pub fn challenge(&self, challenge: Challenge) -> &HeaderMap {
        &self.challenges[challenge as usize]
    }
}

/// The candidate policy of a snapshot (staged policies).
pub struct Shadow {
    pub policy: Policy,
    /// The key runtimes of the candidate's providers (shared with the live policy's
    /// where the entries are the same).
    pub runtimes: Vec<Arc<ProviderRuntime>>,
    /// The staged entries the candidate differs by, `kind/name@index`.
    pub labels: Vec<String>,
}

impl Shadow {
    /// What verifies the candidate's tokens.
    pub fn keys(&self) -> Runtimes<'_> {
        Runtimes(&self.runtimes)
    }
}

impl Deref for Snapshot {
    type Target = Policy;
    fn deref(&self) -> &Policy {
        &self.policy
    }
}

impl Snapshot {
    /// What verifies this snapshot's tokens.
    pub fn keys(&self) -> Runtimes<'_> {
        Runtimes(&self.runtimes)
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("service", &self.policy.service)
            .finish()
    }
}

/// Builds snapshots, keeping each provider's runtime (and so its fetched keys and
/// cache) across snapshots while the provider's entry is unchanged.
#[derive(Default)]
pub struct Builder {
    registry: Registry,
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
        let policy = Policy::compile(&doc)?;
        let (runtimes, mut fresh) = self.registry.runtimes(&policy.providers)?;
        let shadow = match &doc.candidate {
            None => None,
            Some(c) => {
                let candidate =
                    Policy::compile(c).map_err(|e| format!("the staged candidate: {e}"))?;
                let (runtimes, new) = self.registry.runtimes(&candidate.providers)?;
                // New only if the live policy did not just create it.
                fresh.extend(new);
                Some(Shadow {
                    policy: candidate,
                    runtimes,
                    labels: c.staged.clone(),
                })
            }
        };
        let mut keep: Vec<&tribune_model::JwtProvider> = policy.providers.iter().collect();
        if let Some(s) = &shadow {
            keep.extend(s.policy.providers.iter());
        }
        self.registry.retain(&keep);
        let replay_plan = crate::replay::Plan::new(&policy);
        Ok((
            Snapshot {
                version,
                index,
                replay_plan,
                challenges: challenges(&policy.service),
                policy,
                runtimes,
                shadow,
                doc,
            },
            fresh,
        ))
    }
}
