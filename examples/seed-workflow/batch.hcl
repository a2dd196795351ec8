service {
  name = "batch"
  port = 8081
  connect {
    sidecar_service {
      port = 21002
      proxy {
        upstreams = [
          { destination_name = "api", local_bind_port = 9192 }
        ]
      }
    }
  }
}
