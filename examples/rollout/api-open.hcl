# Live: anyone may call api (no token needed yet).
Kind = "service-intentions"
Name = "api"
Sources = [
  { Name = "*", Action = "allow" }
]
