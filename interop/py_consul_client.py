"""py-consul (PyPI) against a Tribune agent with ACLs on and no token yet: the calls
Consul tooling makes, each checked for Consul's shape. Usage:

    python3 py_consul_client.py HOST PORT

Prints one "ok <step>" line per step and "PASS" at the end; any mismatch raises
(non-zero exit with the traceback).
"""

import json
import sys

import consul

host, port = sys.argv[1], int(sys.argv[2])


def step(name):
    print("ok", name, flush=True)


anonymous = consul.Consul(host=host, port=port)
root = anonymous.acl.bootstrap()["SecretID"]
c = consul.Consul(host=host, port=port, token=root)
step("acl.bootstrap")

me = c.agent.self()
assert me["Config"]["Datacenter"] == "dc1", me
assert me["Member"]["Name"] == me["Config"]["NodeName"], me
leader = c.status.leader()
assert leader and leader in c.status.peers(), (leader, c.status.peers())
assert c.catalog.datacenters() == ["dc1"]
step("agent.self, status.leader, status.peers, catalog.datacenters")

for sid, port_, tags, env in [
    ("redis1", 1234, ["primary", "v1"], "prod"),
    ("redis2", 1235, ["secondary", "v1"], "prod"),
    ("redis3", 1236, ["primary", "v2"], "qa"),
]:
    assert c.agent.service.register("redis", service_id=sid, address="127.0.0.1",
                                    port=port_, tags=tags, meta={"env": env})
assert c.agent.service.register(
    "web", port=8080, address="127.0.0.1",
    connect={"SidecarService": {"Proxy": {"Upstreams": [
        {"DestinationName": "redis", "LocalBindPort": 6379}]}}})
step("agent.service.register")

assert set(c.agent.services()) == {"redis1", "redis2", "redis3", "web", "web-sidecar-proxy"}
assert set(c.agent.services(filter_expr="Meta.env == qa")) == {"redis3"}
index, services = c.catalog.services()
assert int(index) > 0 and sorted(services["redis"]) == ["primary", "secondary", "v1", "v2"], services
_, services = c.catalog.services(filter_expr='ServiceMeta.env == "qa"')
assert set(services) == {"redis"} and sorted(services["redis"]) == ["primary", "v2"], services
step("agent.services, catalog.services (filter_expr)")

index, nodes = c.catalog.nodes()
assert [n["Node"] for n in nodes] == [me["Config"]["NodeName"]], nodes
assert nodes[0]["Datacenter"] == "dc1" and nodes[0]["Address"], nodes
assert c.catalog.nodes(filter_expr="Node == nobody")[1] == []
assert c.catalog.nodes(node_meta={"rack": "r1"})[1] == []
_, redis = c.catalog.service("redis", tag="primary")
assert sorted(n["ServiceID"] for n in redis) == ["redis1", "redis3"], redis
step("catalog.nodes, catalog.service")

index, healthy = c.health.service("redis", passing=True)
assert sorted(e["Service"]["ID"] for e in healthy) == ["redis1", "redis2", "redis3"]
assert all(e["Checks"][0]["Status"] == "passing" for e in healthy), healthy
_, tagged = c.health.service("redis", tag=["primary", "v2"])
assert [e["Service"]["ID"] for e in tagged] == ["redis3"], tagged
_, qa = c.health.service("redis", filter_expr="Service.Meta.env == qa")
assert [e["Service"]["ID"] for e in qa] == ["redis3"], qa
_, sidecars = c.health.connect("web")
assert [e["Service"]["ID"] for e in sidecars] == ["web-sidecar-proxy"], sidecars
# A blocking query on the index returned answers when the catalog changes.
assert c.agent.service.deregister("redis2")
_, after = c.health.service("redis", index=index, wait="5s")
assert sorted(e["Service"]["ID"] for e in after) == ["redis1", "redis3"], after
step("health.service (passing, tag, filter_expr, index), health.connect")

# py-consul sends lowercase keys and the rules JSON-encoded (JSON rule syntax).
policy = c.acl.policy.create("redis-read", rules={"service": {"redis": {"policy": "read"}}},
                             description="reads redis")
assert policy["Name"] == "redis-read" and policy["ID"], policy
assert json.loads(c.acl.policy.read(policy["ID"])["Rules"]) == {"service": {"redis": {"policy": "read"}}}
updated = c.acl.policy.update(policy["ID"], "redis-read",
                              rules={"service_prefix": {"redis": {"policy": "read"}}})
assert "service_prefix" in json.loads(updated["Rules"]), updated
assert "redis-read" in [p["Name"] for p in c.acl.policy.list()]
step("acl.policy create/read/update/list")

role = c.acl.role.create("readers", policies_name=["redis-read"], description="read redis")
assert [p["Name"] for p in role["Policies"]] == ["redis-read"], role
assert c.acl.role.read_by_name("readers")["ID"] == role["ID"]
role = c.acl.role.update(role["ID"], "readers", description="reads redis",
                         policies_id=[policy["ID"]])
assert role["Description"] == "reads redis", role
assert [r["ID"] for r in c.acl.role.list(policy=policy["ID"])] == [role["ID"]]
step("acl.role create/read_by_name/update/list")

token = c.acl.token.create(description="redis reader", roles_name=["readers"])
assert token["SecretID"] and [r["Name"] for r in token["Roles"]] == ["readers"], token
reader = consul.Consul(host=host, port=port, token=token["SecretID"])
assert set(reader.agent.services()) == {"redis1", "redis3"}
assert [e["Service"]["ID"] for e in reader.health.service("redis")[1]] == ["redis1", "redis3"]
try:
    reader.health.service("web")
    raise AssertionError("a redis reader read web's health")
except consul.ACLPermissionDenied:
    pass
assert reader.acl.token.read_self()["AccessorID"] == token["AccessorID"]
listed = c.acl.token.list(role=role["ID"])
assert [t["AccessorID"] for t in listed] == [token["AccessorID"]], listed
clone = c.acl.token.clone(token["AccessorID"], description="copy")
assert clone["AccessorID"] != token["AccessorID"] and clone["Description"] == "copy", clone
updated = c.acl.token.update(token["AccessorID"], description="renamed", roles_name=["readers"])
assert updated["Description"] == "renamed", updated
assert c.acl.token.delete(clone["AccessorID"])
assert clone["AccessorID"] not in [t["AccessorID"] for t in c.acl.token.list()]
step("acl.token create/read_self/list(role)/clone/update/delete")

# Log in with an identity one already has (issue #43): an auth method with a local
# key, a binding rule, login and logout, all through py-consul.
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ci_key = ec.generate_private_key(ec.SECP256R1())
ci_pem = ci_key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
method = c.acl.auth_method.create(
    "ci", "jwt", display_name="CI jobs", max_token_ttl="10m",
    config={"JWTValidationPubKeys": [ci_pem], "BoundIssuer": "https://ci.example",
            "BoundAudiences": ["tribune"], "ClaimMappings": {"project": "project"},
            "ListClaimMappings": {"groups": "groups"}})
assert method["Type"] == "jwt" and method["MaxTokenTTL"] == "10m0s", method
assert [m["Name"] for m in c.acl.auth_method.list()] == ["ci"]
assert c.acl.auth_method.read("ci")["Config"]["BoundIssuer"] == "https://ci.example"
step("acl.auth_method create/list/read")

rule = c.acl.binding_rule.create("ci", "service", "${value.project}",
                                 description="deployers act as their project",
                                 selector='"deployers" in list.groups')
assert rule["AuthMethod"] == "ci" and rule["ID"], rule
assert [r["ID"] for r in c.acl.binding_rule.list(auth_method="ci")] == [rule["ID"]]
assert c.acl.binding_rule.read(rule["ID"])["Selector"] == '"deployers" in list.groups'
updated_rule = c.acl.binding_rule.update(rule["ID"], "ci", "service", "${value.project}",
                                         selector='"deployers" in list.groups',
                                         description="renamed")
assert updated_rule["Description"] == "renamed", updated_rule
step("acl.binding_rule create/list/read/update")


def ci_token(groups):
    now = int(time.time())
    return jwt.encode({"iss": "https://ci.example", "aud": "tribune", "project": "redis",
                       "groups": groups, "iat": now, "exp": now + 300}, ci_key, algorithm="ES256")


logged = anonymous.acl.login("ci", ci_token(["deployers"]), meta={"job": "42"})
assert logged["AuthMethod"] == "ci", logged
assert logged["ServiceIdentities"] == [{"ServiceName": "redis"}], logged
assert logged["ExpirationTime"] and logged["Description"] == 'token created via login: {"job":"42"}'
worker = consul.Consul(host=host, port=port, token=logged["SecretID"])
assert worker.agent.service.register("redis", service_id="redis9", port=1239)
try:
    worker.agent.service.register("web", service_id="web9", port=8089)
    raise AssertionError("a redis login registered web")
except consul.ACLPermissionDenied:
    pass
try:
    anonymous.acl.login("ci", ci_token(["readers"]))
    raise AssertionError("a login no rule matches got a token")
except consul.ACLPermissionDenied:
    pass
assert anonymous.acl.logout(logged["SecretID"])
assert logged["AccessorID"] not in [t["AccessorID"] for t in c.acl.token.list()]
assert c.agent.service.deregister("redis9")
step("acl.login, acl.logout")

assert c.acl.binding_rule.delete(rule["ID"])
assert c.acl.auth_method.delete("ci")
assert c.acl.auth_method.list() == []
step("acl.binding_rule delete, acl.auth_method delete")

assert c.acl.role.delete(role["ID"])
assert c.acl.policy.delete(policy["ID"])
assert "redis-read" not in [p["Name"] for p in c.acl.policy.list()]
step("acl.role delete, acl.policy delete")
print("PASS", flush=True)
