"""py-spiffe (PyPI `spiffe`, the standard Python Workload API client) against a
Tribune sidecar's Workload API socket. Usage:

    python3 spiffe_client.py SOCKET_PATH EXPECTED_SPIFFE_ID

Prints one "ok <step>" line per step; then "waiting" and, after a line on stdin
(the caller rotated the CA), "ok rotation" once the X.509-SVID stream carries the new
identity; "PASS" at the end. Any mismatch raises (non-zero exit).
"""
import sys

import grpc
from spiffe import WorkloadApiClient
from spiffe._proto import workload_pb2, workload_pb2_grpc

path, want = sys.argv[1], sys.argv[2]


def step(name):
    print("ok", name, flush=True)


client = WorkloadApiClient(socket_path="unix:" + path)
svid = client.fetch_x509_svid()
assert str(svid.spiffe_id) == want, (str(svid.spiffe_id), want)
assert svid.leaf.subject is not None and svid.private_key is not None
step("fetch_x509_svid")

bundles = client.fetch_x509_bundles()
td = svid.spiffe_id.trust_domain
bundle = bundles.get_bundle_for_trust_domain(td)
assert bundle is not None and len(bundle.x509_authorities) >= 1, bundles
# The leaf's chain verifies against the bundle: one of its authorities signed it.
from cryptography.hazmat.primitives.asymmetric import ec
leaf = svid.leaf
verified = False
for authority in bundle.x509_authorities:
    try:
        authority.public_key().verify(
            leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
        verified = authority.subject == leaf.issuer
    except Exception:
        continue
    if verified:
        break
assert verified, "no authority of the bundle signed the leaf"
step("fetch_x509_bundles, and the chain verifies against the bundle")

jwt = client.fetch_jwt_svid(audience={"api"})
assert str(jwt.spiffe_id) == want and "api" in jwt.audience, jwt
step("fetch_jwt_svid")

jwt_bundles = client.fetch_jwt_bundles()
assert jwt_bundles.get_bundle_for_trust_domain(td) is not None
step("fetch_jwt_bundles")

validated = client.validate_jwt_svid(jwt.token, "api")
assert str(validated.spiffe_id) == want
step("validate_jwt_svid")

for bad in [(jwt.token, "billing"), ("not-a-jwt", "api")]:
    try:
        client.validate_jwt_svid(*bad)
        raise AssertionError(f"validated {bad[1]}")
    except AssertionError:
        raise
    except Exception:
        pass
step("validate_jwt_svid refuses another audience and garbage")

channel = grpc.insecure_channel("unix:" + path)
stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
try:
    next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest()))
    raise AssertionError("answered without the security header")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert "security header missing" in e.details(), e.details()
md = [("workload.spiffe.io", "true")]
try:
    stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["api"], spiffe_id="spiffe://" + str(td) + "/ns/default/dc/dc1/svc/admin"), metadata=md)
    raise AssertionError("served another service's identity")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
step("the security header is required and only this service's identity is served")

stream = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=md)
first = next(stream)
before = first.svids[0].bundle
print("waiting", flush=True)
sys.stdin.readline()
second = next(stream)
assert second.svids[0].spiffe_id == want
assert second.svids[0].bundle != before, "the new root is in the bundle"
step("rotation")
print("PASS", flush=True)
