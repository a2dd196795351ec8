// OIDC sign-in (issue #43) with a real OpenID provider (the `oidc-provider` npm
// package, interop/oidc.mjs) and Chromium: "Log in with Company SSO" in the web UI,
// and `tribune login -type oidc` taking the browser's return on a local listener.
// Both go through the provider's authorization code flow with PKCE.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.TRIBUNE_BIN || join(root, "target/debug/tribune");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ROOT_TOKEN = "root-oidc-test";

let agentProc, idpProc, tmp, browser, agent, issuer, cliPort;

// Starts `cmd args` and resolves with the first match of `re` in its stdout.
function startUntil(cmd, args, re, what) {
  const child = spawn(cmd, args, { env: { ...process.env, TRIBUNE_LOG: "warn" }, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${what} did not start within 30 s`)), 30000);
    child.on("exit", (code) => fail(new Error(`${what} exited with ${code}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(re);
      if (m) {
        clearTimeout(timer);
        ok({ child, match: m[1] });
      }
    });
  });
}

function freePort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function call(method, path, body, token = ROOT_TOKEN) {
  const res = await fetch(`http://${agent}${path}`, {
    method,
    headers: token ? { "X-Consul-Token": token } : {},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) };
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "tribune-oidc-"));
  const config = join(tmp, "acl.hcl");
  writeFileSync(config, `acl {\n  enabled = true\n  default_policy = "deny"\n  tokens { initial_management = "${ROOT_TOKEN}" }\n}\n`);
  const a = await startUntil(BIN, ["agent", "-dev", "-http-port", "0", "-config-file", config], /HTTP addr: ([0-9.:]+)/, "tribune agent");
  agentProc = a.child;
  agent = a.match;
  cliPort = await freePort();
  const idp = await startUntil("node", [join(root, "interop/oidc.mjs"),
    "--sign-in", `http://${agent}/ui/oidc/callback`,
    "--sign-in", `http://localhost:${cliPort}/oidc/callback`], /^READY (\S+)/, "the OpenID provider");
  idpProc = idp.child;
  issuer = idp.match;
  // Wait until the agent answers (its banner comes before "agent running").
  for (let i = 0; i < 100; i++) {
    try { if ((await call("GET", "/v1/status/leader")).status === 200) break; } catch (_) { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  const ok = (r) => assert.ok(r.status === 200, r.text);
  ok(await call("PUT", "/v1/acl/policy", { Name: "ops-read", Rules: 'mesh = "read"\nservice_prefix "" { policy = "read" }' }));
  ok(await call("PUT", "/v1/acl/auth-method", {
    Name: "sso", Type: "oidc", DisplayName: "Company SSO", MaxTokenTTL: "8h",
    Config: {
      OIDCDiscoveryURL: issuer, OIDCClientID: "tribune", OIDCClientSecret: "tribune-secret",
      OIDCScopes: ["email", "groups"],
      AllowedRedirectURIs: [`http://${agent}/ui/oidc/callback`, "http://localhost:8550/oidc/callback"],
      ClaimMappings: { email: "email" }, ListClaimMappings: { groups: "groups" },
    },
  }));
  ok(await call("PUT", "/v1/acl/binding-rule", { AuthMethod: "sso", BindType: "policy", BindName: "ops-read", Selector: '"ops" in list.groups' }));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
});

after(async () => {
  if (browser) await browser.close();
  if (agentProc) agentProc.kill("SIGINT");
  if (idpProc) idpProc.kill("SIGTERM");
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("a person signs in to the UI through the OpenID provider and logs out", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`http://${agent}/ui/`);
  const button = page.locator('#sso button[data-method="sso"]');
  await button.waitFor({ timeout: 15000 });
  assert.equal(await button.innerText(), "Log in with Company SSO");
  await button.click();
  // Through the provider and back: the app finishes the sign-in.
  await page.waitForFunction(() => document.getElementById("token-state")?.textContent === "signed in with sso", null, { timeout: 20000 });
  assert.equal(new URL(page.url()).pathname, "/ui/", "the code and state left the address bar");
  assert.ok(!page.url().includes("code="), page.url());
  const secret = await page.evaluate(() => sessionStorage.getItem("tribune-token"));
  const self = await call("GET", "/v1/acl/token/self", undefined, secret);
  assert.equal(self.status, 200, self.text);
  assert.equal(self.json().AuthMethod, "sso");
  assert.deepEqual(self.json().Policies.map((p) => p.Name), ["ops-read"]);
  assert.match(self.json().Description, /token created via OIDC login/);
  // The pages read with it.
  await page.goto(`http://${agent}/ui/#/entries/service-intentions`);
  await page.waitForSelector('main#page[data-page="entries"][data-ready="true"]');
  // Logging out deletes the token.
  await page.click("#logout");
  await page.waitForFunction(() => document.getElementById("token-state")?.textContent === "anonymous");
  assert.equal((await call("GET", "/v1/acl/token/self", undefined, secret)).status, 403);
  await context.close();
});

test("tribune login -type oidc takes the browser's return on a local listener", async () => {
  const sink = join(tmp, "sso.token");
  const cli = spawn(BIN, ["login", "-type", "oidc", "-method", "sso", "-token-sink-file", sink,
    "-oidc-callback-listen-addr", `127.0.0.1:${cliPort}`, "-http-addr", agent], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  cli.stderr.on("data", (d) => { stderr += d; });
  const exited = new Promise((ok) => cli.on("exit", (code) => ok(code)));
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no auth URL within 15 s: ${stderr}`)), 15000);
    createInterface({ input: cli.stdout }).on("line", (line) => {
      const m = line.trim().match(/^(http\S+)$/);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
  });
  assert.ok(url.startsWith(`${issuer}/auth?`), url);
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => document.body?.innerText.includes("Signed in to Tribune"), null, { timeout: 20000 });
  assert.equal(await exited, 0, stderr);
  assert.equal(statSync(sink).mode & 0o777, 0o600);
  const secret = readFileSync(sink, "utf8");
  const self = await call("GET", "/v1/acl/token/self", undefined, secret);
  assert.equal(self.status, 200, self.text);
  assert.equal(self.json().AuthMethod, "sso");
  await context.close();
});

test("a CI job logs in with the provider's JWT through OIDC discovery", async () => {
  // The job's token: a client-credentials access token the provider signs (a JWT).
  const res = await fetch(`${issuer}/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: "grant_type=client_credentials&client_id=admin-client&client_secret=secret&resource=https://api.example&scope=api:read",
  });
  const jwt = (await res.json()).access_token;
  assert.ok(jwt && jwt.split(".").length === 3, "the provider issued a JWT");
  const ok = (r) => assert.ok(r.status === 200, r.text);
  ok(await call("PUT", "/v1/acl/auth-method", {
    Name: "ci", Type: "jwt", MaxTokenTTL: "10m",
    Config: { OIDCDiscoveryURL: issuer, BoundAudiences: ["https://api.example"], ClaimMappings: { client_id: "client" } },
  }));
  ok(await call("PUT", "/v1/acl/binding-rule", { AuthMethod: "ci", BindType: "service", BindName: "${value.client}" }));
  const login = await call("POST", "/v1/acl/login", { AuthMethod: "ci", BearerToken: jwt }, null);
  assert.equal(login.status, 200, login.text);
  assert.deepEqual(login.json().ServiceIdentities, [{ ServiceName: "admin-client" }]);
  // The same token for another audience is refused, with Consul's text.
  ok(await call("PUT", "/v1/acl/auth-method", {
    Name: "ci-other", Type: "jwt",
    Config: { OIDCDiscoveryURL: issuer, BoundAudiences: ["https://other.example"], ClaimMappings: { client_id: "client" } },
  }));
  ok(await call("PUT", "/v1/acl/binding-rule", { AuthMethod: "ci-other", BindType: "service", BindName: "${value.client}" }));
  const refused = await call("POST", "/v1/acl/login", { AuthMethod: "ci-other", BearerToken: jwt }, null);
  assert.equal(refused.status, 403);
  assert.equal(refused.text, "error validating claims: aud claim does not match any bound audience");
});
