"""Tokens signed by PyJWT (with `cryptography`), for Tribune's interop test.

Prints {"issuer", "audience", "jwks", "tokens": [{"alg", "token"}]} on stdout.
"""
import json
import secrets
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://pyjwt.example"
AUDIENCE = "api"
now = int(time.time())
claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bob", "role": "admin", "iat": now, "exp": now + 600}
keys, tokens = [], []


def add(alg, private, public_jwk):
    kid = f"pyjwt-{alg}"
    public_jwk.update({"kid": kid, "alg": alg})
    keys.append(public_jwk)
    tokens.append({"alg": alg, "token": jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})})


rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
    add(alg, rsa_key, json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())))
for alg, curve in [("ES256", ec.SECP256R1()), ("ES384", ec.SECP384R1()), ("ES512", ec.SECP521R1())]:
    k = ec.generate_private_key(curve)
    add(alg, k, json.loads(ECAlgorithm.to_jwk(k.public_key())))
ed = ed25519.Ed25519PrivateKey.generate()
add("EdDSA", ed, json.loads(OKPAlgorithm.to_jwk(ed.public_key())))
for alg, size in [("HS256", 32), ("HS384", 48), ("HS512", 64)]:
    secret = secrets.token_bytes(size)
    add(alg, secret, json.loads(HMACAlgorithm.to_jwk(secret)))

print(json.dumps({"issuer": ISSUER, "audience": AUDIENCE, "jwks": {"keys": keys}, "tokens": tokens}))
