Kind = "jwt-provider"
Name = "okta"
Issuer = "http://127.0.0.1:9000"
JSONWebKeySet = {
Remote = {
URI = "http://127.0.0.1:9000/jwks"
CacheDuration = "30m"
RetryPolicy = {
NumRetries = 2
}
}
}
Forwarding = {
HeaderName = "user-token"
}
