acl {
  enabled        = true
  default_policy = "deny"
}
