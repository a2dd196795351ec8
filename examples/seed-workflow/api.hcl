service {
  name = "api"
  port = 9090
  connect {
    sidecar_service {
      port = 21000
    }
  }
}
