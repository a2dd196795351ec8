//! Tokens by SecretID, and the authorizers resolved from them, kept for one index of
//! the ACL tables (tokens, policies, roles): any write to them starts afresh. Issue
//! #40: every API call read and decoded every token, then every role and policy (a
//! `GET` with a token took 8.7 ms at 10 000 tokens); now a call is a map lookup, and
//! the tables are read once per change.

use crate::acl::{Authorizer, Token};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Authorizers kept at most (the tokens in use; distinct valid secrets only).
const MAX_AUTHORIZERS: usize = 65_536;

#[derive(Default)]
pub(crate) struct AclCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The ACL tables' index the authorizers hold for.
    at: u64,
    /// Every token by SecretID, and the token table's index they were read at.
    tokens: Option<(u64, Arc<HashMap<String, Token>>)>,
    authorizers: HashMap<String, Authorizer>,
}

impl AclCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_at(&self, index: u64) -> std::sync::MutexGuard<'_, Inner> {
        let mut g = self.lock();
        if g.at != index {
            // A write (or another agent's, on etcd) moved the ACL tables.
            g.at = index;
            g.authorizers.clear();
        }
        g
    }

    /// The authorizer resolved for `secret` at ACL index `index`.
    pub(crate) fn get(&self, index: u64, secret: &str) -> Option<Authorizer> {
        self.lock_at(index).authorizers.get(secret).cloned()
    }

    /// The authorizer kept for `secret` when the kept ones hold for the ACL index
    /// `known` or newer (what this agent last read of the ACL tables).
    pub(crate) fn current(&self, known: u64, secret: &str) -> Option<Authorizer> {
        let g = self.lock();
        if known == 0 || g.at < known {
            return None;
        }
        g.authorizers.get(secret).cloned()
    }

    /// Every token by SecretID at token table index `index`, when read already.
    pub(crate) fn tokens(&self, index: u64) -> Option<Arc<HashMap<String, Token>>> {
        match &self.lock().tokens {
            Some((at, tokens)) if *at == index => Some(tokens.clone()),
            _ => None,
        }
    }

    /// Keeps the tokens read at token table index `index`; returns them.
    pub(crate) fn set_tokens(
        &self,
        index: u64,
        tokens: HashMap<String, Token>,
    ) -> Arc<HashMap<String, Token>> {
        let tokens = Arc::new(tokens);
        self.lock().tokens = Some((index, tokens.clone()));
        tokens
    }

    /// Keeps the authorizer resolved for `secret` at ACL index `index`.
    pub(crate) fn put(&self, index: u64, secret: String, authorizer: Authorizer) {
        let mut g = self.lock_at(index);
        if g.authorizers.len() >= MAX_AUTHORIZERS {
            g.authorizers.clear();
        }
        g.authorizers.insert(secret, authorizer);
    }

    /// This agent created `token` at `written`, guarded on the token table being
    /// at `before.tokens`; `after` are the ACL tables' indexes read after the write.
    /// The kept tokens take it in (no re-read of every token per creation); the
    /// authorizers stay when nothing else moved the ACL tables in between (a new
    /// token changes no other token's authority), so the waiters a creation wakes to
    /// re-check find theirs kept.
    pub(crate) fn created(
        &self,
        before: AclIndexes,
        written: u64,
        after: AclIndexes,
        token: &Token,
    ) {
        let mut g = self.lock();
        if let Some((at, tokens)) = &mut g.tokens {
            if *at == before.tokens {
                Arc::make_mut(tokens).insert(token.secret_id.clone(), token.clone());
                *at = written;
            }
        }
        let only_this = after.tokens == written
            && after.policies <= before.max()
            && after.roles <= before.max();
        if g.at == before.max() && only_this {
            g.at = after.max();
        }
    }
}

/// The indexes of the three ACL tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AclIndexes {
    pub tokens: u64,
    pub policies: u64,
    pub roles: u64,
}

impl AclIndexes {
    /// The ACL index (at least 1).
    pub(crate) fn max(&self) -> u64 {
        self.tokens.max(self.policies).max(self.roles).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(secret: &str) -> Token {
        Token {
            accessor_id: format!("a-{secret}"),
            secret_id: secret.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_created_here_joins_the_kept_tokens_and_keeps_the_authorizers() {
        let cache = AclCache::default();
        let before = AclIndexes {
            tokens: 5,
            policies: 3,
            roles: 0,
        };
        cache.set_tokens(5, HashMap::from([("s1".to_string(), token("s1"))]));
        cache.put(5, "s1".into(), Authorizer::allow_all());
        let after = AclIndexes {
            tokens: 6,
            ..before
        };
        cache.created(before, 6, after, &token("s2"));
        let kept = cache.tokens(6).expect("kept at the new index");
        assert!(kept.contains_key("s1") && kept.contains_key("s2"));
        assert!(cache.get(6, "s1").is_some(), "authorizers kept");
        // A policy written in between: the authorizers start afresh.
        let before = after;
        let after = AclIndexes {
            tokens: 8,
            policies: 7,
            roles: 0,
        };
        cache.created(before, 8, after, &token("s3"));
        assert!(cache.tokens(8).is_some());
        assert!(cache.get(8, "s1").is_none());
    }
}
