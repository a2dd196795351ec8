"""Keys and tokens for bench/run.sh: an RSA-2048 key (PEM public key and certificate
for HAProxy, base64 JWKS for Tribune), 10 000 distinct RS256 tokens and one repeated
token (iss https://idp.example, aud api, role admin, valid for 2 hours), and Tribune's
snapshot of the benchmark policy (tribune.json)."""
import base64
import datetime
import json
import sys
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

out = sys.argv[1]
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pub = key.public_key()
open(f"{out}/pubkey.pem", "wb").write(
    pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (
    x509.CertificateBuilder()
    .subject_name(name).issuer_name(name).public_key(pub)
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(days=1))
    .not_valid_after(now + datetime.timedelta(days=30))
    .sign(key, hashes.SHA256())
)
open(f"{out}/cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
jwk = json.loads(RSAAlgorithm.to_jwk(pub))
jwk.update({"kid": "bench", "alg": "RS256", "use": "sig"})
jwks_b64 = base64.b64encode(json.dumps({"keys": [jwk]}).encode()).decode()
open(f"{out}/jwks.b64", "w").write(jwks_b64)

t0 = int(time.time())
def token(i):
    claims = {"iss": "https://idp.example", "aud": "api", "sub": f"user-{i}", "role": "admin",
              "iat": t0, "exp": t0 + 7200}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})

with open(f"{out}/tokens-10k.txt", "w") as f:
    for i in range(10000):
        f.write(token(i) + "\n")
open(f"{out}/token-1.txt", "w").write(token("repeat") + "\n")

# Tribune's snapshot for the same policy HAProxy is configured with in bench/run.sh:
# RS256 from the provider's JWKS, iss, aud, exp; PathPrefix /api/ and role = admin.
policy = {"Service": "api", "Protocol": "http", "DefaultIntentionPolicy": "deny", "Entries": [
    {"Kind": "jwt-provider", "Name": "idp", "Issuer": "https://idp.example", "Audiences": ["api"],
     "JSONWebKeySet": {"Local": {"JWKS": jwks_b64}}},
    {"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Permissions": [
        {"Action": "allow", "HTTP": {"PathPrefix": "/api/"},
         "JWT": {"Providers": [{"Name": "idp", "VerifyClaims": [{"Path": ["role"], "Value": "admin"}]}]}}]}]}]}
json.dump(policy, open(f"{out}/tribune.json", "w"))

# The same policy with a staged candidate (staged policies' shadow cost): the candidate
# requires role = ops, so it decides every admin request differently (the worst case:
# every request is counted and grouped).
import copy
candidate = copy.deepcopy(policy)
candidate["Entries"][1]["Sources"][0]["Permissions"][0]["JWT"]["Providers"][0]["VerifyClaims"][0]["Value"] = "ops"
candidate["Staged"] = ["service-intentions/api@1"]
shadowed = dict(policy, Candidate=candidate)
json.dump(shadowed, open(f"{out}/tribune-shadow.json", "w"))
