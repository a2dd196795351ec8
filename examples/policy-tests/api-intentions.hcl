# Requests to "api" must carry a valid token from the "okta" provider (top-level JWT).
# "web" may call GET/POST under /v1/ only when the token's perms.role claim is "admin";
# every other path is denied. Anything else falls to the default intention policy.
Kind = "service-intentions"
Name = "api"
JWT = {
  Providers = [
    {
      Name = "okta"
    }
  ]
}
Sources = [
  {
    Name = "web"
    Permissions = [
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/v1/"
          Methods    = ["GET", "POST"]
        }
        JWT {
          Providers = [
            {
              Name = "okta"
              VerifyClaims = [
                {
                  Path  = ["perms", "role"]
                  Value = "admin"
                }
              ]
            }
          ]
        }
      },
      { Action = "deny"  HTTP { PathPrefix = "/" } }
    ]
  }
]
