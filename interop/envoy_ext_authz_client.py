"""Envoy's external authorization gRPC API v3, from a client generated from Envoy's
own protos (PyPI `xds-protos`), against `tribune connect authz -grpc-listener`.
Usage:

    python3 envoy_ext_authz_client.py ADDR TRUST_DOMAIN ADMIN_TOKEN USER_TOKEN TRUSTED

TRUSTED is "yes" when the authz service believes this host's principals. Prints one
"ok <step>" line per step and "PASS" at the end; any mismatch raises.
"""
import sys

import grpc
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as ea
from envoy.service.auth.v3 import external_auth_pb2_grpc as eag

addr, td, admin, user, trusted = sys.argv[1:6]
stub = eag.AuthorizationStub(grpc.insecure_channel(addr))
web = f"spiffe://{td}/ns/default/dc/dc1/svc/web"


def step(name):
    print("ok", name, flush=True)


def check(path, token=None, principal="", destination="api", method="GET", headers=None, metadata=None):
    headers = {"host": "api.example", ":path": path, ":method": method, **(headers or {})}
    if token:
        headers["authorization"] = "Bearer " + token
    http = ac.AttributeContext.HttpRequest(method=method, path=path, host="api.example", headers=headers)
    req = ea.CheckRequest(attributes=ac.AttributeContext(
        source=ac.AttributeContext.Peer(principal=principal),
        request=ac.AttributeContext.Request(http=http),
        context_extensions={"tribune_destination": destination} if destination else {}))
    return stub.Check(req, timeout=5, metadata=metadata)


if trusted == "yes":
    r = check("/v1/items", admin)
    assert r.status.code == 0 and r.HasField("ok_response"), r
    set_headers = {o.header.key.lower(): o.header.value for o in r.ok_response.headers}
    assert set_headers.get("x-jwt-payload", "").startswith("ey"), r
    assert "authorization" in [h.lower() for h in r.ok_response.headers_to_remove], r
    step("allowed: OK with the forwarded payload to set and the token to remove")

    r = check("/v1/items")
    assert r.status.code == 16 and r.denied_response.status.code == 401, r
    assert any(o.header.key.lower() == "www-authenticate" for o in r.denied_response.headers), r
    assert r.denied_response.body == "Jwt is missing", r
    step("no token: 401 with WWW-Authenticate and the sidecar's body")

    r = check("/v1/items", user)
    assert r.status.code == 7 and r.denied_response.status.code == 403, r
    step("wrong role: 403")

    for trick in ["/v1/../admin", "/v1/%2e%2e/admin", "/v1//items"]:
        r = check(trick, admin)
        assert r.status.code != 0 and r.denied_response.status.code in (400, 403), (trick, r)
    step("paths the proxy would forward in another form are refused")

    r = check("/admin", user, principal=web)
    assert r.status.code == 0, r
    r = check("/admin", user, principal=f"spiffe://evil.example/ns/default/dc/dc1/svc/web")
    assert r.status.code == 7, r
    step("source.principal names web in this trust domain only")

    try:
        check("/v1/items", admin, destination="billing")
        raise AssertionError("checked for a destination not served")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "billing" in e.details(), e
    # The authz service also serves "open" (every caller allowed). The checked
    # request's own headers are the client's: they never pick the policy.
    try:
        check("/v1/items", destination=None, headers={"x-tribune-destination": "open"})
        raise AssertionError("a client's own X-Tribune-Destination picked the policy")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "no destination" in e.details(), e
    r = check("/v1/items", destination=None, headers={"x-tribune-destination": "open"},
              metadata=[("x-tribune-destination", "api")])
    assert r.status.code == 16 and r.denied_response.status.code == 401, r
    step("the destination comes from Envoy's configuration (context extension or the call's metadata), never the client's headers")
    try:
        stub.Check(ea.CheckRequest(), timeout=5)
        raise AssertionError("answered an empty CheckRequest")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    step("a misdirected or malformed check is an error, never a guess")
else:
    r = check("/admin", user, principal=web)
    assert r.status.code == 7, r
    step("a principal from a hop that is not trusted gains nothing")
print("PASS", flush=True)
