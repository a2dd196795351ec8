//! What a sidecar tells the agent about itself every few seconds
//! (`PUT /v1/tribune/sidecar-report`, Tribune's own endpoint): the policy it enforces
//! and how fresh it is, and each JWT provider's keys and fetch health. The agent keeps
//! the last report of each sidecar; the UI's Sidecars and JWT providers pages read
//! them (`GET /v1/tribune/sidecars`). One typed document for both sides, decoded with
//! [`crate::decode::from_value`] like every other wire document.

use serde::{Deserialize, Serialize};

/// One sidecar's report.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SidecarReport {
    /// The service whose inbound traffic the sidecar guards.
    pub service: String,
    /// The sidecar's name: `<id>-sidecar-proxy`, or `<service>@<admin address>`.
    pub proxy: String,
    /// The agent's config index of the policy enforced (0: from a file).
    #[serde(default)]
    pub snapshot_index: u64,
    /// Policies installed since the sidecar started.
    #[serde(default)]
    pub snapshot_version: u64,
    /// When an agent last answered the sidecar (Unix seconds; absent: never). A
    /// blocking query is answered when the policy changes or its wait ends, so this
    /// is not the last contact (that is the report itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<i64>,
    /// When the policy enforced was installed (Unix seconds, the sidecar's clock;
    /// absent: none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<i64>,
    /// When the sidecar wrote the report (Unix seconds, its clock).
    #[serde(default)]
    pub reported_at: i64,
    #[serde(default)]
    pub providers: Vec<ProviderHealth>,
    /// When the agent received the report (Unix seconds, the agent's clock; set by
    /// the agent).
    #[serde(default)]
    pub received_at: i64,
}

/// One JWT provider as a sidecar sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProviderHealth {
    pub name: String,
    /// `remote <URI>`, `file <path>` or `inline`.
    pub source: String,
    /// The keys in use.
    #[serde(default)]
    pub keys: Vec<KeySummary>,
    /// Last successful fetch of a remote key set (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch: Option<i64>,
    /// The last failed fetch's error, and when (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<i64>,
    #[serde(default)]
    pub fetches_ok: u64,
    #[serde(default)]
    pub fetches_failed: u64,
    /// Refetches caused by a token naming a `kid` the keys did not have.
    #[serde(default)]
    pub unknown_kid_refetches: u64,
}

/// A key's identity (never its material).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeySummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_through_the_decoder() {
        let r = SidecarReport {
            service: "api".into(),
            proxy: "api-sidecar-proxy".into(),
            snapshot_index: 7,
            snapshot_version: 2,
            last_sync: Some(1_800_000_000),
            installed_at: Some(1_799_999_990),
            reported_at: 1_800_000_001,
            providers: vec![ProviderHealth {
                name: "okta".into(),
                source: "remote http://127.0.0.1:9000/jwks".into(),
                keys: vec![KeySummary {
                    kid: Some("k1".into()),
                    kty: Some("RSA".into()),
                    alg: Some("RS256".into()),
                }],
                last_fetch: Some(1_800_000_000),
                fetches_ok: 1,
                ..Default::default()
            }],
            received_at: 0,
        };
        let v = serde_json::to_value(&r).unwrap();
        let back: SidecarReport = crate::decode::from_value(&v, "").unwrap();
        assert_eq!(back, r);
        let bad = serde_json::json!({"Service": "api", "Proxy": "p", "Extra": 1});
        let e = crate::decode::from_value::<SidecarReport>(&bad, "").unwrap_err();
        assert!(e.to_string().contains("Extra"), "{e}");
    }
}
