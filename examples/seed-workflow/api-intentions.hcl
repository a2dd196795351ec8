# Every request to api needs a valid okta token (top-level JWT). web may call
# /v1/ with GET or POST when the token's perms.role claim is "admin"; every other
# path is denied; other sources fall to the default policy (deny).
Kind = "service-intentions"
Name = "api"
JWT = {
  Providers = [
    { Name = "okta" }
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
      { Action = "deny" HTTP { PathPrefix = "/" } }
    ]
  }
]
