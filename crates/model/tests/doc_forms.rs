//! The HCL forms Consul's own documentation uses for service-intentions and
//! jwt-provider entries must decode (HCL1), and the doc examples Consul itself rejects
//! must be rejected with Consul's message (the forms Consul's docs show).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tribune_model::{parse_entry, ConfigEntry, EntryError};

fn intentions(input: &str) -> tribune_model::ServiceIntentions {
    match parse_entry(input) {
        Ok(ConfigEntry::ServiceIntentions(e)) => e,
        other => panic!("expected service-intentions, got {other:?}\n{input}"),
    }
}

#[test]
fn http_blocks_in_list_objects_with_comments_inside_lists() {
    let e = intentions(
        r#"Kind = "service-intentions"
Name = "ledger"
Sources = [
  {
    Name = "teller-ui"
    Permissions = [
      # the UI may not close accounts
      {
        Action = "deny"
        HTTP {
          PathExact = "/bank.Ledger/CloseAccount"
        }
      },
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/bank.Ledger/"
          Methods    = ["GET", "PUT", "POST", "DELETE", "HEAD"]
        }
      }
    ]
  },
  {
    Name = "auditor"
    Permissions = [
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/bank.Ledger/"
        }
      }
    ]
  }
  # anything else falls to the default intention policy
]
"#,
    );
    assert_eq!(e.sources.len(), 2);
}

#[test]
fn trailing_comma_after_the_last_list_object() {
    let e = intentions(
        r#"Kind = "service-intentions"
Name = "ledger"
Sources = [
  {
    Name   = "intern-project"
    Action = "deny"
  },
  {
    Name = "batch"
    Permissions = [
      {
        Action = "allow"
        HTTP {
          PathExact = "/v1/settle"
          Methods   = ["POST"]
        }
      }
    ]
  },
  # default policy applies to the rest
]
"#,
    );
    assert_eq!(e.sources.len(), 2);
}

#[test]
fn an_indented_file_with_blank_lines() {
    let e = intentions(
        "  Kind      = \"service-intentions\"\n  Name      = \"orders\"\n\n  Sources = [\n    {\n      Name   = \"checkout\"\n      Peer   = \"east-1\"\n      Action = \"allow\"\n    }\n  ]\n",
    );
    assert_eq!(e.sources[0].peer, "east-1");
}

#[test]
fn the_docs_jwt_example_without_action_is_rejected_like_consul() {
    let input = r#"Kind = "service-intentions"
Name = "ledger"
Sources = [
  {
    Name = "teller-ui"
    Permissions = [
      {
        HTTP = {
          PathExact = "/admin"
        }
        JWT = {
          Providers = [
            {
              Name = "okta"
              VerifyClaims = [
                {
                  Path = ["perms", "role"]
                  Value = "admin"
                }
              ]
            }
          ]
        }
      },
      {
        Action = "allow"
        HTTP = {
          PathPrefix = "/"
        }
      }
    ]
  }
]
"#;
    let Err(EntryError::Invalid(errs)) = parse_entry(input) else {
        panic!("expected a validation error");
    };
    assert_eq!(
        errs.messages(),
        ["Sources[0].Permissions[0].Action must be set to 'allow' or 'deny'"]
    );
}

#[test]
fn the_docs_minimal_jwt_example_without_sources_is_rejected_like_consul() {
    let input = r#"Kind = "service-intentions"
Name = "ledger"
JWT = {
  Providers = [
    { Name = "okta" }
  ]
}
"#;
    let Err(EntryError::Invalid(errs)) = parse_entry(input) else {
        panic!("expected a validation error");
    };
    assert_eq!(errs.messages(), ["At least one source is required"]);
}

#[test]
fn jwt_provider_doc_forms() {
    let e = parse_entry(
        r#"Kind = "jwt-provider"
Name = "idp"
Issuer = "https://idp.example.com/"
JSONWebKeySet = {
  Remote = {
    URI = "https://idp.example.com/.well-known/jwks.json"
    FetchAsynchronously = true
    RetryPolicy = {
      NumRetries = 2
      RetryPolicyBackOff = {
        BaseInterval = "1s"
        MaxInterval = "10s"
      }
    }
    JWKSCluster = {
      DiscoveryType = "STRICT_DNS"
      ConnectTimeout = "5s"
      TLSCertificates = {
        TrustedCA = {
          Filename = "/etc/idp/ca.pem"
        }
      }
    }
  }
}
Locations = [
  {
    Header = {
      Name = "Authorization"
      ValuePrefix = "Bearer"
      Forward = true
    }
  },
  {
    QueryParam = {
      Name = "token"
    }
  },
  {
    Cookie = {
      Name = "session"
    }
  }
]
Forwarding = {
  HeaderName = "x-idp-claims"
  PadForwardPayloadHeader = false
}
ClockSkewSeconds = 20
CacheConfig = {
  Size = 50
}
"#,
    );
    assert!(matches!(e, Ok(ConfigEntry::JwtProvider(_))), "{e:?}");
}
