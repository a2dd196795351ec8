# The identity provider the intentions reference. The cases in api.test.hcl describe
# tokens (JWT { ... }), so nothing is fetched from this URI when they run.
Kind   = "jwt-provider"
Name   = "okta"
Issuer = "https://idp.example.com/oauth2/default"
JSONWebKeySet = {
  Remote = {
    URI           = "https://idp.example.com/oauth2/default/v1/keys"
    CacheDuration = "30m"
  }
}
Forwarding = {
  HeaderName = "user-token"
}
