//! Issuance, SPIFFE identities, chain validation, expiry and rotation overlap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tribune_ca::*;

const NOW: i64 = 1_800_000_000;
const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

fn leaf_der(leaf: &Leaf) -> rustls_pki_types::CertificateDer<'static> {
    certs_from_pem(&leaf.cert_pem).unwrap().remove(0)
}

#[test]
fn spiffe_ids_parse_and_print() {
    let id = ServiceId::new(TD, "dc1", "web");
    assert_eq!(id.uri(), format!("spiffe://{TD}/ns/default/dc/dc1/svc/web"));
    assert_eq!(ServiceId::parse(&id.uri()), Some(id));
    for bad in [
        "spiffe://td",
        "spiffe://td/ns/default/dc/dc1/svc/",
        "spiffe:///ns/default/dc/dc1/svc/web",
        "https://td/ns/default/dc/dc1/svc/web",
        "spiffe://td/ns/default/dc/dc1/svc/web/extra",
        "spiffe://td/agent/client/dc/dc1/id/x",
    ] {
        assert_eq!(ServiceId::parse(bad), None, "{bad}");
    }
}

#[test]
fn a_leaf_chains_to_its_root_and_names_its_service() {
    let mut root = Root::generate(TD, NOW).unwrap();
    assert_eq!(root.id.split(':').count(), 20);
    let leaf = root
        .issue_leaf(&ServiceId::new(TD, "dc1", "web"), NOW, DEFAULT_LEAF_TTL)
        .unwrap();
    assert_eq!(leaf.valid_before, NOW + 72 * 3600);
    assert!(leaf.key_pem.contains("PRIVATE KEY"));
    assert!(
        !format!("{leaf:?}").contains("PRIVATE"),
        "keys are redacted from Debug"
    );
    assert!(!format!("{root:?}").contains("PRIVATE"));
    let roots = vec![root.cert_der().unwrap()];
    for usage in [Usage::Client, Usage::Server] {
        let id = verify_leaf(&leaf_der(&leaf), &roots, TD, NOW + 10, usage).unwrap();
        assert_eq!(id.service, "web");
    }
    assert_eq!(identity_of(&leaf_der(&leaf)).unwrap().datacenter, "dc1");
}

#[test]
fn expired_foreign_and_wrong_domain_leaves_are_refused() {
    let mut root = Root::generate(TD, NOW).unwrap();
    let leaf = root
        .issue_leaf(
            &ServiceId::new(TD, "dc1", "web"),
            NOW,
            Duration::from_secs(3600),
        )
        .unwrap();
    let roots = vec![root.cert_der().unwrap()];
    let e = verify_leaf(&leaf_der(&leaf), &roots, TD, NOW + 7200, Usage::Client).unwrap_err();
    assert!(e.0.contains("chain"), "{e}");
    // A leaf from another CA (same trust domain name) does not chain.
    let mut other = Root::generate(TD, NOW).unwrap();
    let foreign = other
        .issue_leaf(&ServiceId::new(TD, "dc1", "web"), NOW, DEFAULT_LEAF_TTL)
        .unwrap();
    assert!(verify_leaf(&leaf_der(&foreign), &roots, TD, NOW, Usage::Client).is_err());
    // The right chain but another trust domain is refused.
    let e = verify_leaf(&leaf_der(&leaf), &roots, "other.consul", NOW, Usage::Client).unwrap_err();
    assert!(e.0.contains("trust domain"), "{e}");
    // A root does not issue outside its trust domain.
    assert!(root
        .issue_leaf(
            &ServiceId::new("other.consul", "dc1", "web"),
            NOW,
            DEFAULT_LEAF_TTL
        )
        .is_err());
}

#[test]
fn after_rotation_old_leaves_stay_valid_until_they_expire() {
    let mut old = Root::generate(TD, NOW).unwrap();
    let old_leaf = old
        .issue_leaf(&ServiceId::new(TD, "dc1", "api"), NOW, DEFAULT_LEAF_TTL)
        .unwrap();
    let mut new = Root::generate(TD, NOW + 100).unwrap();
    let new_leaf = new
        .issue_leaf(
            &ServiceId::new(TD, "dc1", "api"),
            NOW + 100,
            DEFAULT_LEAF_TTL,
        )
        .unwrap();
    // During the overlap both roots are trusted, so both leaves verify.
    assert!(old.trusted_at(NOW + 200, false));
    let both = vec![old.cert_der().unwrap(), new.cert_der().unwrap()];
    verify_leaf(&leaf_der(&old_leaf), &both, TD, NOW + 200, Usage::Server).unwrap();
    verify_leaf(&leaf_der(&new_leaf), &both, TD, NOW + 200, Usage::Server).unwrap();
    // Once the old root's last leaf has expired, it is no longer trusted.
    assert!(!old.trusted_at(old_leaf.valid_before + 1, false));
    assert!(new.trusted_at(old_leaf.valid_before + 1, true));
}
