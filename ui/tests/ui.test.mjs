// The web UI in a real browser: Debian's Chromium (/usr/bin/chromium, or $CHROMIUM)
// driven by playwright-core (which downloads no browser), against `tribune demo`
// (the binary in ../target/debug, or $TRIBUNE_BIN) on free ports. Every page loads
// with no console errors and is screenshotted into target/ui-screenshots/; the
// topology shows the seeded services; a bad edit shows the field's error and stores
// nothing; a valid edit is saved and visible through the API; a concurrent change is
// shown, not overwritten; the simulator's answer is the explain API's.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.TRIBUNE_BIN || join(root, "target/debug/tribune");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = join(root, "target/ui-screenshots");

let demo, tmp, browser, agent, issuer, upstream;
const consoleErrors = [];

function startDemo() {
  tmp = mkdtempSync(join(tmpdir(), "tribune-ui-"));
  const child = spawn(BIN, ["demo", "-http-port", "0", "-issuer-port", "0", "-upstream-port", "0", "-edge-port", "0"], {
    env: { ...process.env, TMPDIR: tmp, TRIBUNE_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("tribune demo did not print its banner within 30 s")), 30000);
    const lines = createInterface({ input: child.stdout });
    const fields = {};
    child.on("exit", (code) => fail(new Error(`tribune demo exited with ${code}`)));
    lines.on("line", (line) => {
      const m = line.match(/^\s+([A-Za-z ]+):\s+http:\/\/([0-9.:]+)/);
      if (m) fields[m[1]] = m[2];
      const u = line.match(/web reaches api at http:\/\/([0-9.:]+)/);
      if (u) upstream = u[1];
      if (line.includes("-explain")) {
        clearTimeout(timer);
        ok({ child, fields });
      }
    });
  });
}

async function api(method, path, body) {
  const res = await fetch(`http://${agent}${path}`, {
    method,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) };
}

async function tokenFor(user) {
  const res = await fetch(`http://${issuer}/token?user=${user}`);
  assert.equal(res.status, 200);
  return (await res.text()).trim();
}

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(`${page.url()}: ${m.text()}`); });
  page.on("pageerror", (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  return page;
}

async function open(page, hash, name) {
  await page.goto(`http://${agent}/ui/${hash}`);
  await page.waitForSelector(`main#page[data-page="${name}"][data-ready="true"]`, { timeout: 15000 });
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  const started = await startDemo();
  demo = started.child;
  agent = started.fields["Web UI"];
  issuer = started.fields["Token issuer"];
  assert.ok(agent && issuer && upstream, JSON.stringify(started.fields));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  // The sidecars report at start; wait (bounded) until both have.
  for (let i = 0; i < 100; i++) {
    const r = await api("GET", "/v1/tribune/sidecars");
    if (r.status === 200 && r.json().length === 2) break;
    await new Promise((ok) => setTimeout(ok, 100));
  }
});

after(async () => {
  if (browser) await browser.close();
  if (demo) demo.kill("SIGINT");
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const PAGES = ["topology", "entries", "simulator", "providers", "sidecars", "staged"];

test("every page loads with no console errors, and is screenshotted", async () => {
  // A staged candidate, so the staged page has a difference to show.
  const candidate = (await api("GET", "/v1/config/service-intentions/api")).json();
  delete candidate.CreateIndex; delete candidate.ModifyIndex;
  candidate.Sources[0].Permissions[0].HTTP.PathPrefix = "/staged-ui-test/";
  const staged = await api("PUT", "/v1/config?stage=true", candidate);
  assert.equal(staged.status, 200, staged.text);
  const page = await newPage();
  const before = consoleErrors.length;
  for (const name of PAGES) {
    await open(page, `#/${name}`, name);
    assert.equal(await page.locator("main#page .notice.error").count(), 0, `${name}: ${await page.locator("main#page").innerText()}`);
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  }
  const diff = page.locator('[data-staged="service-intentions/api"] .diff .add');
  await open(page, "#/staged", "staged");
  assert.match(await diff.allInnerTexts().then((t) => t.join("\n")), /staged-ui-test/);
  // Only changed lines are marked (jsdiff's line diff), not the whole entry.
  const added = await diff.count();
  const removed = await page.locator('[data-staged="service-intentions/api"] .diff .del').count();
  const all = await page.locator('[data-staged="service-intentions/api"] .diff > div').count();
  assert.ok(added >= 1 && removed >= 1 && added + removed <= 6 && all > 40, `${added} added, ${removed} removed of ${all}`);
  assert.deepEqual(consoleErrors.slice(before), []);
  await api("DELETE", "/v1/config/service-intentions/api?stage=true");
  await page.context().close();
});

test("the topology shows the seeded services and intentions", async () => {
  const page = await newPage();
  await open(page, "#/topology", "topology");
  const services = await page.locator("#topology [data-service]").evaluateAll((els) => els.map((e) => e.dataset.service).sort());
  assert.deepEqual(services, ["*", "api", "batch", "web"]);
  const webApi = page.locator('#topology [data-edge="web->api"]');
  assert.equal(await webApi.getAttribute("data-action"), "l7");
  assert.equal(await webApi.getAttribute("data-jwt"), "true");
  assert.equal(await page.locator('#topology [data-edge="batch->*"]').getAttribute("data-action"), "deny");
  assert.match(await page.locator("#default-policy").innerText(), /Default policy: deny/);
  await webApi.locator("path.hit").dispatchEvent("click");
  const detail = await page.locator("#edge-detail").innerText();
  assert.match(detail, /web → api/);
  assert.match(detail, /2 L7 permission\(s\)/);
  assert.match(detail, /PathPrefix "\/v1\/"/);
  await page.context().close();
});

async function editApiIntentions(page, edit) {
  await open(page, "#/entries/service-intentions/api", "entries");
  await page.click("#edit-entry");
  const text = await page.inputValue("#editor");
  const changed = edit(text);
  assert.notEqual(changed, text, "the edit changed nothing");
  await page.fill("#editor", changed);
}

test("an edit with a bad field shows the field's error and stores nothing", async () => {
  const page = await newPage();
  const stored = (await api("GET", "/v1/config/service-intentions/api")).json();
  await editApiIntentions(page, (t) => t.replace('Action = "deny"', 'Action = "maybe"'));
  await page.click("#save-entry");
  const error = page.locator("#editor-report li[data-field]");
  await error.first().waitFor();
  assert.equal(await error.getAttribute("data-field"), "Sources[0].Permissions[1].Action");
  assert.match(await error.innerText(), /must be set to 'allow' or 'deny'/);
  assert.ok(Number(await error.getAttribute("data-line")) > 0, "the error points at a line of the text");
  const after = (await api("GET", "/v1/config/service-intentions/api")).json();
  assert.equal(after.ModifyIndex, stored.ModifyIndex);
  assert.deepEqual(after, stored);
  await page.context().close();
});

test("a valid edit is saved and visible through the API; a concurrent change is shown, not overwritten", async () => {
  const page = await newPage();
  await editApiIntentions(page, (t) => t.replace('"/v1/"', '"/v2/"'));
  await page.click("#save-entry");
  await page.waitForSelector('#entry-view[data-format="hcl"]');
  await page.waitForFunction(() => document.querySelector("#entry-view").textContent.includes("/v2/"));
  let stored = (await api("GET", "/v1/config/service-intentions/api")).json();
  assert.equal(stored.Sources[0].Permissions[0].HTTP.PathPrefix, "/v2/");

  // Opened for editing, then changed by someone else: saving shows the change.
  await editApiIntentions(page, (t) => t.replace('"/v2/"', '"/v3/"'));
  const theirs = { ...stored };
  delete theirs.CreateIndex; delete theirs.ModifyIndex;
  theirs.Sources = structuredClone(stored.Sources);
  theirs.Sources[0].Permissions[0].HTTP.PathPrefix = "/v1/";
  assert.equal((await api("PUT", "/v1/config", theirs)).text, "true");
  await page.click("#save-entry");
  await page.waitForSelector("#conflict-current");
  assert.match(await page.locator("#editor-report").innerText(), /changed by someone else/);
  stored = (await api("GET", "/v1/config/service-intentions/api")).json();
  assert.equal(stored.Sources[0].Permissions[0].HTTP.PathPrefix, "/v1/");
  await page.context().close();
});

test("a new entry with write-time warnings is saved only after they are shown", async () => {
  const page = await newPage();
  await open(page, "#/entries/service-intentions", "entries");
  await page.click("#new-entry");
  // A JWT requirement on web, a tcp service (no service-defaults): ignored, and said.
  await page.fill("#editor", 'Kind = "service-intentions"\nName = "web"\nJWT { Providers = [{ Name = "okta" }] }\nSources = [\n  { Name = "api", Action = "allow" },\n]\n');
  await page.click("#save-entry");
  const warning = page.locator("#editor-report .warnings li");
  await warning.first().waitFor();
  assert.match(await warning.first().innerText(), /service "web" does not use an HTTP protocol/);
  assert.equal(await page.locator("#save-entry").innerText(), "Save with these warnings");
  assert.equal((await api("GET", "/v1/config/service-intentions/web")).status, 404);
  await page.click("#save-entry");
  await page.waitForSelector('#entry-view[data-format="hcl"]');
  const stored = await api("GET", "/v1/config/service-intentions/web");
  assert.equal(stored.status, 200, stored.text);
  assert.equal(stored.json().Sources[0].Name, "api");
  await api("DELETE", "/v1/config/service-intentions/web");
  await page.context().close();
});

test("the simulator answers what the explain API answers", async () => {
  const alice = await tokenFor("alice");
  const bob = await tokenFor("bob");
  const cases = [
    { Source: "web", Destination: "api", Method: "GET", Path: "/v1/items", Token: alice },
    { Source: "web", Destination: "api", Method: "GET", Path: "/v1/items", Token: bob },
    { Source: "web", Destination: "api", Method: "GET", Path: "/v1/items" },
    { Source: "web", Destination: "api", Method: "GET", Path: "/admin", Token: alice },
    { Source: "web", Destination: "api", Method: "DELETE", Path: "/v1/items", Token: alice },
    { Source: "batch", Destination: "api", Method: "GET", Path: "/v1/items", Token: alice },
    { Destination: "api", Method: "GET", Path: "/v1/items", Token: alice },
    { Source: "web", Destination: "api", Method: "GET", Path: "/v1/%2e%2e/admin", Token: alice },
    { Source: "web", Destination: "api", Method: "GET", Path: "/v1/items", Headers: { "X-Debug": ["1"] }, Token: "not.a.jwt" },
  ];
  const page = await newPage();
  await open(page, "#/simulator", "simulator");
  const seen = new Set();
  for (const c of cases) {
    const want = await api("POST", "/v1/connect/intentions/explain", c);
    assert.equal(want.status, 200, want.text);
    const w = want.json();
    await page.fill("#sim-source", c.Source || "");
    await page.fill("#sim-destination", c.Destination);
    await page.fill("#sim-method", c.Method || "");
    await page.fill("#sim-path", c.Path || "");
    await page.fill("#sim-headers", Object.entries(c.Headers || {}).map(([k, v]) => `${k}: ${v[0]}`).join("\n"));
    await page.fill("#sim-token", c.Token || "");
    await page.evaluate(() => document.querySelector("#sim-result").replaceChildren());
    await page.click("#explain");
    const answer = page.locator("#answer");
    await answer.waitFor();
    const label = JSON.stringify({ ...c, Token: c.Token ? "…" : undefined });
    assert.equal(await answer.getAttribute("data-allowed"), String(w.Allowed), label);
    assert.equal(await answer.getAttribute("data-status"), String(w.Status ?? ""), label);
    assert.equal(await page.locator("#verdict").innerText(), w.Allowed ? "Allowed" : "Denied", label);
    assert.equal(await page.locator('#answer td[data-row="Reason"]').innerText(), `${w.Reason} [${w.ReasonCode}]`, label);
    assert.equal(await page.locator('#answer td[data-row="Body"]').innerText(), w.Body ?? "", label);
    seen.add(w.Status);
  }
  // The set covers an allow and each kind of denial.
  assert.deepEqual([...seen].sort(), [200, 401, 403]);
  await page.context().close();
});

test("the simulator asks for a destination, shows the verified claims and wraps long values", async () => {
  const page = await newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await open(page, "#/simulator", "simulator");
  // Placeholders are examples, not values.
  assert.match(await page.getAttribute("#sim-destination", "placeholder"), /^e\.g\. /);
  assert.equal(await page.inputValue("#sim-destination"), "");
  // Nothing to explain without a destination: said at once, no API error.
  await page.click("#explain");
  assert.match(await page.locator("#sim-result .notice.error").innerText(), /^Destination is required/);
  // The verified token's claims are shown; a very long value (here the path, shown
  // back normalized) wraps instead of widening the page.
  await page.fill("#sim-source", "web");
  await page.fill("#sim-destination", "api");
  await page.fill("#sim-path", `/v1/items/${"x".repeat(2500)}`);
  await page.fill("#sim-token", await tokenFor("alice"));
  await page.click("#explain");
  await page.locator("#answer").waitFor();
  const claims = page.locator('#answer td[data-row="Claims (okta)"]');
  assert.match(await claims.innerText(), /"sub": "alice"/);
  const width = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(width[0] <= width[1], `the page is ${width[0]} px wide in a ${width[1]} px window`);
  await page.context().close();
});

test("JWT providers and sidecars show what the sidecars report", async () => {
  const page = await newPage();
  await open(page, "#/providers", "providers");
  const okta = page.locator('[data-provider="okta"]');
  assert.match(await okta.innerText(), /remote http:\/\/127\.0\.0\.1:\d+\/jwks/);
  assert.match(await okta.locator('tr[data-sidecar="api-sidecar-proxy"] td.keys').innerText(), /demo-1 RSA RS256/);
  await okta.locator("button.check-provider").click();
  await okta.locator(".check [data-ok]").waitFor();
  assert.equal(await okta.locator(".check [data-ok]").getAttribute("data-ok"), "true");

  await open(page, "#/sidecars", "sidecars");
  const rows = await page.locator("#sidecars tr[data-sidecar]").evaluateAll((els) => els.map((e) => `${e.dataset.service}:${e.dataset.sidecar}`).sort());
  assert.deepEqual(rows, ["api:api-sidecar-proxy", "web:web-sidecar-proxy"]);
  const api = page.locator('#sidecars tr[data-sidecar="api-sidecar-proxy"]');
  assert.match(await api.innerText(), /connected/);
  // The last contact and the last policy change are told apart.
  assert.match(await api.locator('td[data-col="contact"]').innerText(), /^\d+ s ago$/);
  assert.match(await api.locator('td[data-col="policy"]').innerText(), /^\d+ s ago$/);
  // Without ACLs an empty list is empty, not hidden.
  await open(page, "#/entries/proxy-defaults", "entries");
  assert.match(await page.locator("#entry-list").innerText(), /No entries of this kind yet/);
  await page.context().close();
});

test("the staged page promotes and unstages, and shows a conflict with the way out", async () => {
  const original = (await api("GET", "/v1/config/service-intentions/api")).json();
  delete original.CreateIndex; delete original.ModifyIndex; delete original.Hash;
  const stage = async (prefix) => {
    const candidate = JSON.parse(JSON.stringify(original));
    candidate.Sources[0].Permissions[0].HTTP.PathPrefix = prefix;
    const r = await api("PUT", "/v1/config?stage=true", candidate);
    assert.equal(r.status, 200, r.text);
  };
  const page = await newPage();
  const panel = page.locator('[data-staged="service-intentions/api"]');
  // The live entry changes after staging: promote is refused and says why.
  await stage("/promote-ui-test/");
  await api("PUT", "/v1/config", { ...original, Meta: { note: "changed after staging" } });
  // A sidecar's report of where the candidate differs, shown grouped.
  const staged = (await api("GET", "/v1/tribune/staged")).json().find((c) => c.Name === "api");
  const report = await api("PUT", "/v1/tribune/shadow-report", [{
    Candidate: staged.Candidate, Service: "api", Proxy: "ui-test-sidecar", Seen: 9, Changed: 2,
    Groups: [{ Caller: "web", Method: "GET", PathPrefix: "/v1", Live: "allow", Candidate: "deny", Reason: "default",
      LiveStatus: 200, CandidateStatus: 403, Count: 2, Example: "GET /v1/items" }],
  }]);
  assert.equal(report.status, 200, report.text);
  await open(page, "#/staged", "staged");
  const group = panel.locator('table.groups tr[data-caller="web"]');
  assert.match(await group.innerText(), /GET\s+\/v1\s+allow 200 → deny 403\s+default\s+2\s+GET \/v1\/items/);
  const diffText = (await panel.locator(".diff > div").allInnerTexts()).join("\n");
  assert.doesNotMatch(diffText, /"Hash"/);
  await panel.locator("button.promote").click();
  await panel.locator(".outcome .notice").waitFor();
  assert.match(await panel.locator(".outcome").innerText(), /^Not promoted: the live entry service-intentions\/api changed since the candidate was staged/);
  // The browser logs the refused request (409) itself; that one is expected.
  const refused = consoleErrors.findIndex((e) => /status of 409 \(Conflict\)/.test(e));
  assert.ok(refused >= 0, consoleErrors.join("\n"));
  consoleErrors.splice(refused, 1);
  // Unstage drops the candidate.
  await panel.locator("button.unstage").click();
  await page.waitForFunction(() => /Unstaged/.test(document.querySelector('[data-staged="service-intentions/api"] .outcome').innerText));
  assert.equal((await api("GET", "/v1/config/service-intentions/api?stage=true")).status, 404);
  // Staged again and promoted: the candidate is live.
  await stage("/promote-ui-test/");
  await open(page, "#/topology", "topology");
  await open(page, "#/staged", "staged");
  await panel.locator("button.promote").click();
  await page.waitForFunction(() => /Promoted/.test(document.querySelector('[data-staged="service-intentions/api"] .outcome').innerText));
  const live = (await api("GET", "/v1/config/service-intentions/api")).json();
  assert.equal(live.Sources[0].Permissions[0].HTTP.PathPrefix, "/promote-ui-test/");
  const restored = await api("PUT", "/v1/config", original);
  assert.equal(restored.status, 200, restored.text);
  await page.context().close();
});

test("no page logged a console error", () => {
  assert.deepEqual(consoleErrors, []);
});
