//! Keeps the proxy's snapshot current from the agent with blocking queries on
//! `GET /v1/tribune/proxy-snapshot/<service>`.
//!
//! - A changed document is compiled and swapped in; an unchanged one is ignored.
//! - Agent unreachable or erroring: the proxy keeps enforcing its last snapshot
//!   (fail static) and retries with jittered exponential back-off (100 ms .. 10 s).
//! - An index that goes backwards (agent restarted with a new store) resets it.
//! - The agent refuses the token (401/403: revoked, deleted, or without
//!   `service:write`): not an outage. The proxy is told ([`Proxy::agent_refusal`]), so
//!   `/ready` answers 503 and the `agent_token_refused` gauge is 1, until an answer
//!   comes back.

use crate::sidecar::AgentError;
use crate::{Proxy, SnapshotDoc};
use std::sync::Arc;
use std::time::Duration;
use tribune_client::Client;

/// How long one blocking query waits on the agent.
pub const WAIT: Duration = Duration::from_secs(60);

/// Fetches once (blocking from `index`) and installs a changed document.
/// Returns the new index.
pub async fn poll_once(
    proxy: &Proxy,
    client: &Client,
    service: &str,
    index: u64,
    last_body: &mut String,
) -> Result<u64, AgentError> {
    let path = format!(
        "{}?index={index}&wait={}s",
        tribune_model::api::paths::proxy_snapshot(service),
        WAIT.as_secs()
    );
    let res = crate::sidecar::agent_get(client, &path, WAIT + Duration::from_secs(15)).await;
    proxy.agent_refusal(
        crate::Watch::Policy,
        res.as_ref().err().filter(|e| e.refused()),
    );
    let res = res?;
    let new_index = res
        .header("x-consul-index")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    proxy.synced();
    // Keys fetched since the last round (asynchronous fetches, refreshes).
    proxy.save_keys();
    if res.body != *last_body {
        let value = tribune_model::decode::parse_json(res.body.as_bytes())
            .map_err(|e| AgentError::Invalid(format!("snapshot is not JSON: {e}")))?;
        let installed = match SnapshotDoc::from_json(&value) {
            Ok(doc) => proxy.install(doc, new_index).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = installed {
            // Not installable here (an agent of another version, say): the last
            // policy stays, with the key sets of this document's providers, so a
            // key rotation or revocation still takes effect; /ready and the
            // `policy_install_failed` gauge say so until a document installs.
            let keys = match proxy.current() {
                Some(cur) => proxy
                    .install(with_new_keys(&cur.doc, &value), cur.index)
                    .await
                    .is_ok(),
                None => false,
            };
            tracing::error!(error = %e, index = new_index, keys_applied = keys, "the agent's policy document cannot be installed; enforcing the last one");
            proxy.install_failed(Some(format!("index {new_index}: {e}")));
            *last_body = res.body;
            return Ok(if new_index < index { 0 } else { new_index });
        }
        proxy.install_failed(None);
        if let Some(state) = proxy.state() {
            state.update(|s| {
                s.service = service.to_string();
                s.snapshot = Some(value);
                s.snapshot_index = new_index;
            });
        }
        *last_body = res.body;
    }
    Ok(if new_index < index { 0 } else { new_index })
}

/// `old` with the provider entries that the document `new` (JSON) also carries
/// taken from `new` (their key sets, above all): what a sidecar enforces when `new`
/// cannot be installed. Each provider of `new` is read on its own, so one bad entry
/// elsewhere in it does not stop a key rotation.
fn with_new_keys(old: &SnapshotDoc, new: &serde_json::Value) -> SnapshotDoc {
    use tribune_model::ConfigEntry;
    let newer: Vec<tribune_model::JwtProvider> = new["Entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["Kind"] == "jwt-provider")
        .filter_map(|e| match tribune_model::entry_from_json(e.clone()) {
            Ok(ConfigEntry::JwtProvider(p)) => Some(p),
            _ => None,
        })
        .collect();
    let mut merged = old.clone();
    for entry in &mut merged.entries {
        if let ConfigEntry::JwtProvider(p) = entry {
            if let Some(np) = newer.iter().find(|np| np.name == p.name) {
                *p = np.clone();
            }
        }
    }
    merged
}

/// Runs forever: blocking queries, installs, back-off on failure.
pub async fn watch_agent(proxy: Arc<Proxy>, client: Client, service: String) {
    watch_agent_from(proxy, client, service, 0, String::new()).await
}

/// [`watch_agent`] after a first [`poll_once`] that answered `index` with `last_body`.
pub async fn watch_agent_from(
    proxy: Arc<Proxy>,
    client: Client,
    service: String,
    mut index: u64,
    mut last_body: String,
) {
    let mut backoff = Duration::from_millis(100);
    // Since when the watch has been failing: the next answer says it is back.
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        match poll_once(&proxy, &client, &service, index, &mut last_body).await {
            Ok(i) => {
                index = i;
                backoff = Duration::from_millis(100);
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        down_s = since.elapsed().as_secs(),
                        index,
                        "reconnected to the agent; the policy watch is current again"
                    );
                }
            }
            Err(e) if e.refused() => {
                failing_since.get_or_insert_with(std::time::Instant::now);
                let have = proxy.current().map(|s| s.version).unwrap_or(0);
                tracing::error!(error = %e, enforcing_version = have, retry_in_ms = backoff.as_millis() as u64, "the agent refused this sidecar's token; /ready answers 503 until it is accepted again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                failing_since.get_or_insert_with(std::time::Instant::now);
                let have = proxy.current().map(|s| s.version).unwrap_or(0);
                tracing::warn!(error = %e, enforcing_version = have, retry_in_ms = backoff.as_millis() as u64, "policy watch failed; keeping the last snapshot");
                let jitter =
                    Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
