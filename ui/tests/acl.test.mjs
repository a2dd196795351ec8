// The UI with ACLs on (`tribune agent -dev` with an acl block): the token entered
// once is kept in sessionStorage for the tab and sent as X-Consul-Token; what it may
// not read is not shown. (Chrome logs the agent's 403 answers as console errors, so
// this file does not count them; ui.test.mjs checks every page without ACLs.)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.TRIBUNE_BIN || join(root, "target/debug/tribune");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ROOT_TOKEN = "root-ui-test";

let agentProc, tmp, browser, agent;

function startAgent() {
  tmp = mkdtempSync(join(tmpdir(), "tribune-ui-acl-"));
  const config = join(tmp, "acl.hcl");
  writeFileSync(config, `acl {\n  enabled = true\n  default_policy = "deny"\n  tokens { initial_management = "${ROOT_TOKEN}" }\n}\n`);
  const child = spawn(BIN, ["agent", "-dev", "-http-port", "0", "-config-file", config], {
    env: { ...process.env, TRIBUNE_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("the agent did not start within 30 s")), 30000);
    child.on("exit", (code) => fail(new Error(`tribune agent exited with ${code}`)));
    let addr;
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(/HTTP addr: ([0-9.:]+)/);
      if (m) addr = m[1];
      if (line.includes("agent running")) {
        clearTimeout(timer);
        ok({ child, addr });
      }
    });
  });
}

async function call(method, path, body, token = ROOT_TOKEN) {
  const res = await fetch(`http://${agent}${path}`, {
    method,
    headers: { "X-Consul-Token": token },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

before(async () => {
  const started = await startAgent();
  agentProc = started.child;
  agent = started.addr;
  for (const name of ["api", "web", "billing"]) {
    await call("PUT", "/v1/config", { Kind: "service-intentions", Name: name, Sources: [{ Name: "frontend", Action: "allow" }] });
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
});

after(async () => {
  if (browser) await browser.close();
  if (agentProc) agentProc.kill("SIGINT");
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function open(page, hash, name) {
  await page.goto(`http://${agent}/ui/${hash}`);
  await page.waitForSelector(`main#page[data-page="${name}"][data-ready="true"]`, { timeout: 15000 });
}

async function useToken(page, secret, name) {
  await page.fill("#token", secret);
  await page.click("#token-form button");
  await page.waitForSelector(`main#page[data-page="${name}"][data-ready="true"]`);
}

test("the token is kept for the tab and only what it may read is shown", async () => {
  await call("PUT", "/v1/acl/policy", { Name: "api-reader", Rules: 'service "api" { policy = "read" }' });
  const token = await call("PUT", "/v1/acl/token", { Policies: [{ Name: "api-reader" }] });
  const context = await browser.newContext();
  const page = await context.newPage();

  await open(page, "#/entries/service-intentions", "entries");
  assert.match(await page.locator("#entry-list").innerText(), /No entries of this kind that this token may read/);
  await open(page, "#/topology", "topology");
  assert.match(await page.locator("main#page").innerText(), /No services or intentions this token may read/);

  await useToken(page, token.SecretID, "topology");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("tribune-token")), token.SecretID);
  const services = await page.locator("#topology [data-service]").evaluateAll((els) => els.map((e) => e.dataset.service).sort());
  assert.deepEqual(services, ["api", "frontend"]);
  // Kept across page loads in this tab.
  await open(page, "#/entries/service-intentions", "entries");
  const names = await page.locator("#entry-list a[data-name]").evaluateAll((els) => els.map((e) => e.dataset.name));
  assert.deepEqual(names, ["api"]);

  await useToken(page, ROOT_TOKEN, "entries");
  const all = await page.locator("#entry-list a[data-name]").evaluateAll((els) => els.map((e) => e.dataset.name).sort());
  assert.deepEqual(all, ["api", "billing", "web"]);
  // A token the agent does not know is said to be one, not shown as an empty list.
  await page.fill("#token", "00000000-0000-4000-8000-00000000dead");
  await page.click("#token-form button");
  await page.waitForSelector('main#page[data-ready="true"]');
  assert.match(await page.locator("main#page").innerText(), /ACL not found: the agent does not know this token/);
  // Another tab does not have it.
  const other = await (await browser.newContext()).newPage();
  await open(other, "#/entries/service-intentions", "entries");
  assert.equal(await other.locator("#entry-list a[data-name]").count(), 0);
  await context.close();
});
