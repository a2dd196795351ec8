service {
  name = "web"
  port = 8080
  connect {
    sidecar_service {
      port = 21001
      proxy {
        upstreams = [
          { destination_name = "api", local_bind_port = 9191 }
        ]
      }
    }
  }
}
