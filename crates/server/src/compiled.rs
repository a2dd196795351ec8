//! Policies compiled from the stored entries, kept by (destination, config index):
//! explain calls and the check that every served document compiles share one
//! compilation per change instead of one per call (hardening round 3, item 6: an
//! entry of 4 000 large regexes cost 2.1 s per explain call).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tribune_enforce::Policy;

/// Compilations kept (destinations times recent indexes).
const KEEP: usize = 256;

type Compiled = Result<Arc<Policy>, String>;

#[derive(Default)]
pub(crate) struct CompiledPolicies {
    by_key: Mutex<HashMap<(String, u64), Compiled>>,
}

impl CompiledPolicies {
    /// The policy of `destination` at config `index`: kept, or compiled by `compile`
    /// now (outside the lock) and kept. A failure is kept too: the same entries fail
    /// the same way until they change.
    pub(crate) fn get(
        &self,
        destination: &str,
        index: u64,
        compile: impl FnOnce() -> Result<Policy, String>,
    ) -> Compiled {
        let key = (destination.to_string(), index);
        if let Some(hit) = self.lock().get(&key) {
            return hit.clone();
        }
        let made = compile().map(Arc::new);
        let mut kept = self.lock();
        if kept.len() >= KEEP {
            // Older indexes first; everything when one index fills it.
            kept.retain(|(_, i), _| *i >= index);
            if kept.len() >= KEEP {
                kept.clear();
            }
        }
        kept.insert(key, made.clone());
        made
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Compiled>> {
        self.by_key.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_compiled_once_per_destination_and_index() {
        let kept = CompiledPolicies::default();
        let doc = tribune_enforce::PolicyDocument::from_entries(
            "api",
            tribune_model::intentions::Action::Deny,
            &[],
        );
        let mut compiles = 0;
        for _ in 0..3 {
            kept.get("api", 7, || {
                compiles += 1;
                Policy::compile(&doc)
            })
            .unwrap();
        }
        assert_eq!(compiles, 1);
        kept.get("api", 8, || {
            compiles += 1;
            Policy::compile(&doc)
        })
        .unwrap();
        assert_eq!(compiles, 2);
        let failed = kept.get("web", 8, || Err("bad".into()));
        assert_eq!(failed.err().as_deref(), Some("bad"));
        assert!(kept.get("web", 8, || unreachable!()).is_err());
    }
}
