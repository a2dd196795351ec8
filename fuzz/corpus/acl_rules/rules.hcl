service "web" { policy = "write" intentions = "read" }
service_prefix "" { policy = "read" }
mesh = "write"
acl = "read"
