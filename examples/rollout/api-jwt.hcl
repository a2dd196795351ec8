# The candidate: the same, but every request needs a token from "idp".
Kind = "service-intentions"
Name = "api"
JWT = {
  Providers = [
    { Name = "idp" }
  ]
}
Sources = [
  { Name = "*", Action = "allow" }
]
