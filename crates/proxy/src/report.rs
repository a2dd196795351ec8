//! The sidecar's reports to the agent: its status (`PUT /v1/tribune/sidecar-report`:
//! the policy it enforces, when an agent last answered, each provider's keys and fetch
//! health) and its shadow counters (`PUT /v1/tribune/shadow-report`, staged policies).
//! Sent at start, after every policy installed, and every [`REPORT_EVERY`].

use crate::shadow::{report_once as shadow_report, REPORT_EVERY};
use crate::Proxy;
use std::sync::Arc;
use tribune_client::Client;
use tribune_model::status::SidecarReport;

/// The status report of `proxy` now.
pub fn status(proxy: &Proxy, service: &str, name: &str) -> SidecarReport {
    let snap = proxy.current();
    let now = crate::state::now();
    SidecarReport {
        service: service.to_string(),
        proxy: name.to_string(),
        snapshot_index: snap.as_ref().map_or(0, |s| s.index),
        snapshot_version: snap.as_ref().map_or(0, |s| s.version),
        last_sync: proxy.since_sync().map(|ago| now - ago),
        installed_at: proxy.installed_at(),
        reported_at: now,
        providers: snap
            .as_ref()
            .map(|s| s.runtimes.iter().map(|rt| rt.health()).collect())
            .unwrap_or_default(),
        received_at: 0,
    }
}

/// Sends the status report once.
pub async fn status_once(
    proxy: &Proxy,
    client: &Client,
    service: &str,
    name: &str,
) -> Result<(), String> {
    let body = serde_json::to_vec(&status(proxy, service, name)).map_err(|e| e.to_string())?;
    let r = client
        .request("PUT", tribune_model::api::paths::SIDECAR_REPORT, Some(body))
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("agent answered {}: {}", r.status, r.body.trim()));
    }
    Ok(())
}

/// Runs forever: both reports at start, after each policy installed, and every
/// [`REPORT_EVERY`] (failures are logged at debug: the agent may be away).
pub async fn report_to_agent(proxy: Arc<Proxy>, client: Client, service: String, name: String) {
    loop {
        if let Err(e) = status_once(&proxy, &client, &service, &name).await {
            tracing::debug!(error = %e, "sidecar report not sent");
        }
        if let Err(e) = shadow_report(&proxy, &client, &service, &name).await {
            tracing::debug!(error = %e, "shadow report not sent");
        }
        tokio::select! {
            _ = tokio::time::sleep(REPORT_EVERY) => {}
            _ = proxy.installed.notified() => {}
        }
    }
}
