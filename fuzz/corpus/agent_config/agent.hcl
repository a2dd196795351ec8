datacenter = "east"
ports { http = 8600 }
acl { enabled = true default_policy = "deny" tokens { initial_management = "x" } }
limits { http_max_conns_per_client = 5 }
