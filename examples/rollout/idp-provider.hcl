# A provider with a local key set (paths are relative to where the sidecar runs).
Kind   = "jwt-provider"
Name   = "idp"
Issuer = "https://idp.example.com"
JSONWebKeySet = {
  Local = {
    Filename = "examples/rollout/jwks.json"
  }
}
