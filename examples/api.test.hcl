# Policy tests for the quick start's entries (README "Policy tests"), offline:
#   tribune intention test -entries examples/okta-provider.hcl \
#     -entries examples/api-defaults.hcl -entries examples/api-intentions.hcl \
#     -entries examples/seed-workflow/all-intentions.hcl examples/api.test.hcl
# or against a running agent's entries:
#   tribune intention test examples/api.test.hcl

Test "admin reads items" {
  Source      = "web"
  Destination = "api"
  Method      = "GET"
  Path        = "/v1/items"
  JWT { Provider = "okta"  Claims = { perms = { role = "admin" } } }
  Expect      = "allow"
}

Test "admin creates items" {
  Source      = "web"
  Destination = "api"
  Method      = "POST"
  Path        = "/v1/items?dry_run=1"
  Headers     = { "content-type" = "application/json" }
  JWT { Provider = "okta"  Claims = { perms = { role = "admin" } } }
  Expect      = "allow"
}

Test "a user may not read items" {
  Source      = "web"
  Destination = "api"
  Path        = "/v1/items"
  JWT { Provider = "okta"  Claims = { perms = { role = "user" } } }
  Expect      = 403
}

Test "no token is a 401" {
  Source      = "web"
  Destination = "api"
  Path        = "/v1/items"
  Expect      = 401
}

Test "admin may not delete" {
  Source      = "web"
  Destination = "api"
  Method      = "DELETE"
  Path        = "/v1/items/7"
  JWT { Provider = "okta"  Claims = { perms = { role = "admin" } } }
  Expect      = "deny"
}

Test "paths outside /v1/ are denied" {
  Source      = "web"
  Destination = "api"
  Path        = "/admin/users"
  JWT { Provider = "okta"  Claims = { perms = { role = "admin" } } }
  Expect      = 403
}

Test "dot segments do not escape the allowed prefix" {
  Source      = "web"
  Destination = "api"
  Path        = "/v1/../admin/users"
  JWT { Provider = "okta"  Claims = { perms = { role = "admin" } } }
  Expect      = 403
}

Test "an escaped slash is refused before any intention" {
  Source      = "web"
  Destination = "api"
  Path        = "/v1%2Fitems"
  JWT { Provider = "okta"  Claims = { perms = { role = "admin" } } }
  Expect      = 400
}

Test "batch is denied everywhere" {
  Source      = "batch"
  Destination = "api"
  Path        = "/v1/items"
  JWT { Provider = "okta"  Claims = { perms = { role = "admin" } } }
  Expect      = "deny"
}

Test "callers outside the mesh fall to the default policy" {
  Destination = "api"
  Path        = "/v1/items"
  JWT { Provider = "okta"  Claims = { perms = { role = "admin" } } }
  Expect      = "deny"
}
