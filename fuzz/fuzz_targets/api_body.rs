//! The API's request bodies and answers (`tribune_model::api`): a body decoded in Go
//! `encoding/json` mode (the ACL bodies, an auth method) or an answer a client decodes never panics,
//! and what decodes survives its own serialization unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tribune_model::api::{
    AclPolicyBody, AclRoleBody, AclTokenBody, AgentService, ReplayResult, ServiceEntry,
};

fn round_trip<T>(v: &serde_json::Value)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(t) = tribune_model::decode::from_go_json::<T>(v) {
        let again: T = tribune_model::decode::from_go_json(
            &serde_json::to_value(&t).expect("a decoded body serializes"),
        )
        .expect("a serialized body decodes");
        assert_eq!(again, t);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = tribune_model::decode::parse_json(data) else {
        return;
    };
    round_trip::<AclPolicyBody>(&v);
    round_trip::<AclRoleBody>(&v);
    round_trip::<AclTokenBody>(&v);
    if let Ok(s) = serde_json::from_value::<AgentService>(v.clone()) {
        let again: AgentService =
            serde_json::from_value(serde_json::to_value(&s).expect("serializes")).expect("decodes");
        assert_eq!(again, s);
    }
    let _ = serde_json::from_value::<Vec<ServiceEntry>>(v.clone());
    // An auth method body (`PUT /v1/acl/auth-method`): decoded, checked and written
    // back out without a panic, whatever its durations hold.
    if let Ok(mut m) = serde_json::from_value::<tribune_model::auth_method::AuthMethod>(v.clone()) {
        let _ = m.validate(None);
        let _ = serde_json::to_value(&m).expect("an auth method serializes");
    }
    let _ = serde_json::from_value::<ReplayResult>(v);
});
