# L7 permissions need an HTTP-like protocol on the destination.
Kind     = "service-defaults"
Name     = "api"
Protocol = "http"
