# A wildcard-destination entry: batch may not call any service, whatever other
# entries or the default policy say.
Kind = "service-intentions"
Name = "*"
Sources = [
  { Name = "batch", Action = "deny" }
]
