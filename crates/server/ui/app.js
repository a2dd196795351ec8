// Tribune's web UI: plain DOM code over the agent's HTTP API. Everything shown comes
// from the API with the user's ACL token (sessionStorage, sent as X-Consul-Token), so
// what the token may not read is not shown. Text from the API is only ever set as
// text (never parsed as HTML).
"use strict";

const KINDS = ["service-intentions", "service-defaults", "jwt-provider", "proxy-defaults", "mesh"];
const TOKEN_KEY = "tribune-token";

// ---------- helpers ----------

function h(tag, attrs, ...children) {
  const svg = ["svg", "g", "path", "rect", "text", "title", "marker", "defs", "polygon"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}: ${body.trim()}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, { text = false } = {}) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["X-Consul-Token"] = token;
  if (body !== undefined && typeof body !== "string") {
    body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, { method, headers, body });
  // Consul's mark of a list the token saw only part of.
  if (res.headers.get("X-Consul-Results-Filtered-By-ACLs") === "true") hiddenReads++;
  const t = await res.text();
  if (!res.ok) throw new ApiError(res.status, t);
  if (text) return t;
  return t ? JSON.parse(t) : null;
}

// Reads refused while the current page loaded: an empty list then means "hidden
// from this token", not "none" (an agent without ACLs refuses nothing).
let hiddenReads = 0;

// What an empty list says: hidden from this token, or none at all.
function emptyText(what, none) {
  return hiddenReads ? `No ${what} this token may read.` : none;
}

// A GET whose 403 means "not shown to this token": an empty answer. A token the agent
// does not know is no such thing: it is said.
async function readable(path, empty) {
  try {
    return await api("GET", path);
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) {
      if (/ACL not found/.test(e.body)) {
        throw new Error("ACL not found: the agent does not know this token. Check it, or clear it to read as the anonymous token.");
      }
      hiddenReads++;
      return empty;
    }
    throw e;
  }
}

function status(msg) {
  document.getElementById("status").textContent = msg || "";
}

function notice(msg, error) {
  return h("div", { class: error ? "notice error" : "notice" }, msg);
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return `${seconds} s ago`;
}

function when(unix) {
  if (!unix) return "never";
  return `${new Date(unix * 1000).toISOString().replace(".000Z", "Z")} (${Math.max(0, Math.round(Date.now() / 1000 - unix))} s ago)`;
}

function pretty(v) {
  return JSON.stringify(v, null, 2);
}

// ---------- pages ----------

const pages = {
  topology: topologyPage,
  entries: entriesPage,
  simulator: simulatorPage,
  providers: providersPage,
  sidecars: sidecarsPage,
  staged: stagedPage,
};

async function route() {
  const [, name, ...rest] = (location.hash || "#/topology").split("/");
  const page = pages[name] ? name : "topology";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  const main = document.getElementById("page");
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  main.dataset.page = page;
  main.dataset.ready = "false";
  hiddenReads = 0;
  try {
    const content = await pages[page](rest.map(decodeURIComponent));
    main.replaceChildren(content);
    status("");
  } catch (e) {
    main.replaceChildren(notice(`Could not load the page: ${e.message}`, true));
  }
  main.dataset.ready = "true";
}

// ----- Topology -----

// Edges of the service graph from the service-intentions entries: one per source.
function intentionEdges(entries) {
  const edges = [];
  for (const entry of entries) {
    const topJwt = !!(entry.JWT && (entry.JWT.Providers || []).length);
    (entry.Sources || []).forEach((src, index) => {
      const perms = src.Permissions || [];
      const l7 = perms.length > 0;
      const jwt = topJwt || perms.some((p) => p.JWT && (p.JWT.Providers || []).length);
      const action = l7 ? "l7" : (src.Action || "deny");
      edges.push({
        from: src.Peer ? `${src.Name} (peer ${src.Peer})` : src.Name,
        to: entry.Name,
        action,
        jwt,
        entry,
        source: src,
        index,
      });
    });
  }
  return edges;
}

async function topologyPage() {
  const [catalog, intentions, defaults, self] = await Promise.all([
    readable("/v1/catalog/services", {}),
    readable("/v1/config/service-intentions", []),
    readable("/v1/config/service-defaults", []),
    readable("/v1/agent/self", null),
  ]);
  const protocols = Object.fromEntries((defaults || []).map((d) => [d.Name, d.Protocol || "tcp"]));
  const edges = intentionEdges(intentions || []);
  const names = new Set(Object.keys(catalog || {}).filter((n) => !n.endsWith("-sidecar-proxy")));
  for (const e of edges) { names.add(e.from); names.add(e.to); }
  const policy = self ? self.DebugConfig.DefaultIntentionPolicy : "unknown";

  const side = h("div", { class: "panel side", id: "edge-detail" },
    h("p", { class: "muted" }, "Click an edge to see its intention and permissions."));
  const legend = h("p", { class: "legend" },
    h("span", {}, h("span", { class: "swatch allow" }), "allow"),
    h("span", {}, h("span", { class: "swatch deny" }), "deny"),
    h("span", {}, h("span", { class: "swatch l7" }), "L7 permissions"),
    h("span", {}, h("span", { class: "swatch jwt" }), "JWT required"),
    h("span", { id: "default-policy" }, `Default policy: ${policy} (requests no intention matches)`));
  const content = h("div", {}, h("h2", {}, "Topology"), legend);
  if (names.size === 0) {
    content.append(notice(emptyText("services or intentions", "No services or intentions yet: write a service-intentions entry (Entries, or tribune config write).")));
    return content;
  }
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "LR", nodesep: 36, ranksep: 140, marginx: 20, marginy: 20 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of names) {
    const label = protocols[n] ? `${n} (${protocols[n]})` : n;
    g.setNode(n, { label, width: Math.max(90, label.length * 8 + 24), height: 36 });
  }
  edges.forEach((e, i) => g.setEdge(e.from, e.to, { width: 60, height: 16, labelpos: "c" }, `e${i}`));
  dagre.layout(g);

  const graph = g.graph();
  const svg = h("svg", {
    class: "graph", id: "topology",
    viewBox: `0 0 ${Math.ceil(graph.width)} ${Math.ceil(graph.height)}`,
    height: Math.ceil(graph.height),
  });
  svg.append(h("defs", {}, h("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, h("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#444c59" }))));
  edges.forEach((e, i) => {
    const pts = g.edge({ v: e.from, w: e.to, name: `e${i}` }).points;
    const d = pts.map((p, j) => `${j ? "L" : "M"} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(" ");
    const mid = pts[Math.floor(pts.length / 2)];
    const label = `${e.action === "l7" ? "L7" : e.action}${e.jwt ? " · JWT" : ""}`;
    const el = h("g", {
      class: `edge ${e.action}${e.jwt ? " jwt" : ""}`,
      "data-edge": `${e.from}->${e.to}`,
      "data-action": e.action,
      "data-jwt": e.jwt ? "true" : "false",
      onclick: () => {
        for (const x of svg.querySelectorAll(".edge.selected")) x.classList.remove("selected");
        el.classList.add("selected");
        side.replaceChildren(edgeDetail(e));
      },
    },
    h("title", {}, `${e.from} → ${e.to}: ${label}`),
    h("path", { class: "hit", d }),
    h("path", { class: "line", d, "marker-end": "url(#arrow)" }),
    h("text", { x: mid.x, y: mid.y - 6 }, label));
    svg.append(el);
  });
  for (const n of g.nodes()) {
    const node = g.node(n);
    svg.append(h("g", { class: `node${n === "*" ? " wildcard" : ""}`, "data-service": n },
      h("rect", { x: node.x - node.width / 2, y: node.y - node.height / 2, width: node.width, height: node.height, rx: 6 }),
      h("text", { x: node.x, y: node.y }, node.label)));
  }
  content.append(h("div", { class: "row" }, h("div", { class: "grow" }, svg), side));
  return content;
}

function edgeDetail(e) {
  const src = e.source;
  const out = h("div", {},
    h("h3", {}, `${e.from} → ${e.to}`),
    h("p", {}, `Entry service-intentions/${e.entry.Name}, source ${e.index}. `,
      src.Permissions && src.Permissions.length ? `${src.Permissions.length} L7 permission(s), checked in order:` : `Action: ${src.Action}.`),
  );
  if (src.Permissions && src.Permissions.length) {
    const list = h("ol", { start: 0 });
    for (const p of src.Permissions) {
      const http = p.HTTP ? Object.entries(p.HTTP).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(", ") : "any request";
      const jwt = p.JWT ? ` · JWT ${(p.JWT.Providers || []).map((x) => x.Name).join(", ")}` : "";
      list.append(h("li", {}, h("strong", { class: p.Action === "allow" ? "ok" : "bad" }, p.Action), ` ${http}${jwt}`));
    }
    out.append(list);
  }
  if (e.entry.JWT) out.append(h("p", {}, `Every request needs a token: ${(e.entry.JWT.Providers || []).map((x) => x.Name).join(", ")}.`));
  out.append(h("h3", {}, "Source (JSON)"), h("pre", {}, pretty(src)));
  out.append(h("p", {}, h("a", { href: `#/entries/service-intentions/${encodeURIComponent(e.entry.Name)}` }, "Open the entry")));
  return out;
}

// ----- Config entries -----

async function entriesPage([kind, name]) {
  kind = KINDS.includes(kind) ? kind : KINDS[0];
  const list = (await readable(`/v1/config/${kind}`, [])) || [];
  const tabs = h("div", { class: "tabs" }, KINDS.map((k) =>
    h("button", { class: k === kind ? "active" : "", "data-kind": k, onclick: () => { location.hash = `#/entries/${k}`; } }, k)));
  const names = h("div", { class: "list panel", id: "entry-list" },
    list.length ? list.map((e) => h("a", {
      href: `#/entries/${kind}/${encodeURIComponent(e.Name)}`,
      class: e.Name === name ? "active" : "",
      "data-name": e.Name,
    }, e.Name)) : h("p", { class: "muted" }, emptyText("entries of this kind that", "No entries of this kind yet.")),
    h("p", {}, h("button", { id: "new-entry", onclick: () => openEditor(detail, kind, null) }, "New entry")));
  const detail = h("div", { class: "grow", id: "entry-detail" });
  const entry = list.find((e) => e.Name === name);
  if (entry) await showEntry(detail, kind, entry);
  else detail.append(h("p", { class: "muted" }, "Pick an entry."));
  return h("div", {}, h("h2", {}, "Config entries"), tabs, h("div", { class: "row" }, h("div", { class: "side" }, names), detail));
}

async function showEntry(detail, kind, entry) {
  const hcl = await api("GET", `/v1/config/${kind}/${encodeURIComponent(entry.Name)}?format=hcl`, undefined, { text: true });
  const view = h("pre", { id: "entry-view", "data-format": "hcl" }, hcl);
  const show = (fmt) => {
    view.dataset.format = fmt;
    view.textContent = fmt === "hcl" ? hcl : pretty(entry);
    for (const b of detail.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.format === fmt);
  };
  detail.replaceChildren(
    h("h3", {}, `${kind}/${entry.Name}`, h("span", { class: "muted" }, ` · ModifyIndex ${entry.ModifyIndex}`)),
    h("div", { class: "tabs" },
      h("button", { class: "active", "data-format": "hcl", onclick: () => show("hcl") }, "HCL"),
      h("button", { "data-format": "json", onclick: () => show("json") }, "JSON"),
      h("button", { id: "edit-entry", onclick: () => openEditor(detail, kind, entry, hcl) }, "Edit")),
    view);
}

// The line of `text` that holds the last key of a field path (`Sources[0].Name` -> `Name`).
function lineOf(text, field) {
  if (!field) return null;
  const key = field.replace(/\[\d+\]/g, "").split(".").pop();
  if (!key) return null;
  const lines = text.split("\n");
  const escaped = key.replace(/[.*+?^$(){}|[\]\\]/g, "\\$&");
  const re = new RegExp("(^|[\\s{\"])" + escaped + "\"?\\s*[={]", "i");
  const i = lines.findIndex((l) => re.test(l));
  return i < 0 ? null : i + 1;
}

function openEditor(detail, kind, entry, hcl) {
  const template = entry ? hcl : `Kind = "${kind}"\nName = ""\n`;
  const editor = h("textarea", { class: "code", id: "editor", spellcheck: "false" });
  editor.value = template;
  const report = h("div", { id: "editor-report" });
  let acknowledged = null; // the text whose warnings the user has seen
  const save = h("button", { class: "primary", id: "save-entry" }, "Save");
  const validate = h("button", { id: "validate-entry" }, "Validate");

  async function check() {
    const text = editor.value;
    // check=true: the agent also fetches a provider's keys, as `config write` does.
    const v = await api("POST", "/v1/tribune/config/validate?check=true", text);
    report.replaceChildren();
    if (v.Errors && v.Errors.length) {
      report.append(h("p", { class: "bad" }, `Not saved: ${v.Errors.length} problem(s).`),
        h("ul", { class: "errors" }, v.Errors.map((e) => {
          const line = lineOf(text, e.Field);
          return h("li", { "data-field": e.Field || "", "data-line": line || "" },
            e.Field ? h("span", { class: "field" }, e.Field) : null,
            line ? ` (line ${line})` : "", e.Field ? ": " : "", e.Message,
            line ? h("button", { class: "goto", onclick: () => selectLine(editor, line) }, "show") : null);
        })));
    }
    if (v.Warnings && v.Warnings.length) {
      report.append(h("p", { class: "warn" }, "Warnings (the entry can be saved):"),
        h("ul", { class: "warnings" }, v.Warnings.map((w) => h("li", {}, w))));
    }
    if (v.Extensions && v.Extensions.length) {
      report.append(h("p", { class: "muted", id: "extensions" }, `Uses Tribune extensions: ${v.Extensions.join(", ")} (Consul would refuse this entry).`));
    }
    if (v.Valid && !(v.Warnings || []).length) report.prepend(h("p", { class: "ok" }, "Valid."));
    return v;
  }

  validate.addEventListener("click", () => check().catch((e) => report.replaceChildren(notice(e.message, true))));
  save.addEventListener("click", async () => {
    try {
      const text = editor.value;
      const v = await check();
      if (!v.Valid) return;
      if ((v.Warnings || []).length && acknowledged !== text) {
        acknowledged = text;
        save.textContent = "Save with these warnings";
        return;
      }
      // CAS: the index the editor was opened at, or "must not exist yet" for a new
      // entry (or a renamed one): a concurrent change is never overwritten.
      const same = entry && v.Kind === kind && v.Name === entry.Name;
      const cas = same ? entry.ModifyIndex : 0;
      const ok = await api("PUT", `/v1/config?cas=${cas}`, v.Entry);
      if (ok === true) {
        status(`Saved ${v.Kind}/${v.Name}.`);
        location.hash = `#/entries/${v.Kind}/${encodeURIComponent(v.Name)}`;
        if (location.hash === `#/entries/${v.Kind}/${encodeURIComponent(v.Name)}`) route();
        return;
      }
      const current = (await api("GET", `/v1/config/${v.Kind}`)).find((e) => e.Name === v.Name);
      report.replaceChildren(notice(current
        ? `Not saved: ${v.Kind}/${v.Name} was changed by someone else (ModifyIndex ${same ? entry.ModifyIndex : "none"} → ${current.ModifyIndex}). Your text is kept above; the stored version is below. Reload to edit it.`
        : `Not saved: ${v.Kind}/${v.Name} was deleted or created meanwhile.`, true),
      current ? h("pre", { id: "conflict-current" }, pretty(current)) : null);
      report.setAttribute("data-conflict", "true");
    } catch (e) {
      report.replaceChildren(notice(e.message, true));
    }
  });
  editor.addEventListener("input", () => { save.textContent = "Save"; });
  detail.replaceChildren(
    h("h3", {}, entry ? `Edit ${kind}/${entry.Name}` : `New ${kind}`),
    h("p", { class: "muted" }, "HCL or JSON, as in a file for `tribune config write`. Saving checks the entry first and never overwrites a concurrent change."),
    editor,
    h("p", {}, validate, " ", save, " ",
      h("button", { onclick: () => (entry ? showEntry(detail, kind, entry) : detail.replaceChildren()) }, "Cancel")),
    report);
}

function selectLine(textarea, line) {
  const lines = textarea.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(start, start + lines[line - 1].length);
}

// ----- Simulator -----

function parseHeaders(text) {
  const out = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const i = line.indexOf(":");
    if (i <= 0) throw new Error(`Headers: "${line}" is not "Name: value"`);
    const name = line.slice(0, i).trim();
    (out[name] = out[name] || []).push(line.slice(i + 1).trim());
  }
  return out;
}

// The explain API's request for the simulator's fields.
function explainRequest(f) {
  const req = { Destination: f.destination.trim() };
  if (f.source.trim()) req.Source = f.source.trim();
  if (f.method.trim()) req.Method = f.method.trim();
  if (f.path.trim()) req.Path = f.path.trim();
  const headers = parseHeaders(f.headers);
  if (Object.keys(headers).length) req.Headers = headers;
  if (f.token.trim()) req.Token = f.token.trim();
  return req;
}

function explainAnswer(a) {
  const intention = a.Intention ? `${a.Intention.SourceName} → ${a.Intention.DestinationName} (precedence ${a.Intention.Precedence})` : "none (the default policy decided)";
  const rows = [
    ["Decision", a.Decision],
    ["Reason", `${a.Reason} [${a.ReasonCode}]`],
    ["Deciding intention", intention],
    ["Permission", a.Permission === null || a.Permission === undefined ? "none" : String(a.Permission)],
    ["Normalized path", a.NormalizedPath],
    ["HTTP status", a.Status === null || a.Status === undefined ? "connection refused (L4)" : String(a.Status)],
    ["Body", a.Body === null || a.Body === undefined ? "" : a.Body],
  ];
  if (a.WWWAuthenticate) rows.push(["WWW-Authenticate", a.WWWAuthenticate]);
  for (const t of a.Tokens || []) {
    rows.push([`Token (${t.Provider})`, `${t.Outcome}${t.Error ? `: ${t.Error}` : ""}`]);
    // The verified token's claims: what VerifyClaims and ClaimToHeaders read.
    if (t.Claims) rows.push([`Claims (${t.Provider})`, h("pre", { class: "claims" }, JSON.stringify(t.Claims, null, 2))]);
  }
  for (const [k, v] of Object.entries(a.ForwardedHeaders || {})) rows.push([`Sets header ${k}`, v]);
  return h("div", { id: "answer", "data-allowed": a.Allowed ? "true" : "false", "data-status": a.Status ?? "" },
    h("p", { class: `verdict ${a.Allowed ? "ok" : "bad"}`, id: "verdict" }, a.Allowed ? "Allowed" : "Denied"),
    h("table", { class: "answer" }, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { "data-row": k }, v)))));
}

async function simulatorPage() {
  const field = (id, label, el) => [h("label", { for: id }, label), el];
  const inputs = {
    // Placeholders say "e.g." and look unlike values: an empty field is not "web".
    source: h("input", { id: "sim-source", placeholder: "e.g. web (empty: a caller outside the mesh)" }),
    destination: h("input", { id: "sim-destination", placeholder: "e.g. api (required)", required: "" }),
    method: h("input", { id: "sim-method", placeholder: "e.g. GET (empty: GET)" }),
    path: h("input", { id: "sim-path", placeholder: "e.g. /v1/items?x=1 (empty: /)" }),
    headers: h("textarea", { id: "sim-headers", placeholder: "e.g. X-Debug: 1 (one header per line)" }),
    token: h("textarea", { id: "sim-token", placeholder: "e.g. eyJhbGciOi... (sent as Authorization: Bearer)" }),
  };
  const result = h("div", { class: "panel", id: "sim-result" }, h("p", { class: "muted" }, "The sidecar's own answer appears here."));
  const button = h("button", { class: "primary", id: "explain" }, "Explain");
  button.addEventListener("click", async () => {
    try {
      const values = Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value]));
      if (!values.destination.trim()) {
        result.replaceChildren(notice("Destination is required: the service whose sidecar answers.", true));
        inputs.destination.focus();
        return;
      }
      const req = explainRequest(values);
      if (req.Headers && req.Token) {
        // The token goes as a bearer header unless Headers already carries one.
        const has = Object.keys(req.Headers).some((k) => k.toLowerCase() === "authorization");
        if (has) delete req.Token;
      }
      result.replaceChildren(explainAnswer(await api("POST", "/v1/connect/intentions/explain", req)));
    } catch (e) {
      result.replaceChildren(notice(e.message, true));
    }
  });
  return h("div", {}, h("h2", {}, "Simulator"),
    h("p", { class: "muted" }, "Describe a request; the answer is the destination's sidecar's, computed by the same engine (POST /v1/connect/intentions/explain)."),
    h("div", { class: "row" },
      h("div", { class: "panel grow" }, h("div", { class: "form-grid" },
        field("sim-source", "Source", inputs.source),
        field("sim-destination", "Destination", inputs.destination),
        field("sim-method", "Method", inputs.method),
        field("sim-path", "Path", inputs.path),
        field("sim-headers", "Headers", inputs.headers),
        field("sim-token", "Token", inputs.token),
        h("span"), h("div", {}, button))),
      h("div", { class: "grow" }, result)));
}

// ----- JWT providers -----

function keySource(p) {
  const s = p.JSONWebKeySet || {};
  if (s.Remote) return `remote ${s.Remote.URI}`;
  if (s.Local && s.Local.Filename) return `file ${s.Local.Filename}`;
  return "inline";
}

async function providersPage() {
  const [providers, sidecars] = await Promise.all([
    readable("/v1/config/jwt-provider", []),
    readable("/v1/tribune/sidecars", []),
  ]);
  const content = h("div", {}, h("h2", {}, "JWT providers"));
  if (!providers.length) {
    content.append(notice(emptyText("jwt-provider entries", "No jwt-provider entries yet.")));
    return content;
  }
  for (const p of providers) {
    const seen = [];
    for (const s of sidecars) for (const ph of s.Providers || []) if (ph.Name === p.Name) seen.push([s, ph]);
    const checkOut = h("div", { class: "check" });
    const box = h("div", { class: "panel", "data-provider": p.Name },
      h("h3", {}, p.Name, h("span", { class: "muted" }, ` · Issuer ${p.Issuer || "(none)"} · ${keySource(p)}`)),
      seen.length ? h("table", {},
        h("tr", {}, ["Sidecar", "Keys (kid, kty, alg)", "Last fetch", "Last error", "Unknown-kid refetches", "Fetches ok / failed"].map((x) => h("th", {}, x))),
        seen.map(([s, ph]) => h("tr", { "data-sidecar": s.Proxy, "data-service": s.Service },
          h("td", {}, `${s.Service} / ${s.Proxy}`),
          h("td", { class: "keys" }, (ph.Keys || []).map((k) => `${k.Kid || "(no kid)"} ${k.Kty || "?"} ${k.Alg || "?"}`).join("; ") || "none"),
          h("td", {}, ph.Source.startsWith("remote") ? when(ph.LastFetch) : "not fetched (local keys)"),
          h("td", { class: ph.LastError ? "bad" : "" }, ph.LastError ? `${ph.LastError} (${when(ph.LastErrorAt)})` : "none"),
          h("td", {}, String(ph.UnknownKidRefetches || 0)),
          h("td", {}, `${ph.FetchesOk || 0} / ${ph.FetchesFailed || 0}`))))
        : h("p", { class: "muted" }, "No sidecar reports this provider yet."),
      h("p", {}, h("button", {
        class: "check-provider",
        onclick: async () => {
          checkOut.replaceChildren(h("p", { class: "muted" }, "Checking…"));
          try {
            const r = await api("GET", `/v1/tribune/jwt-provider/${encodeURIComponent(p.Name)}/check`);
            checkOut.replaceChildren(checkReport(r));
          } catch (e) {
            checkOut.replaceChildren(notice(e.message, true));
          }
        },
      }, "Check from the agent")),
      checkOut);
    content.append(box);
  }
  return content;
}

function checkReport(r) {
  return h("div", { "data-ok": r.Ok ? "true" : "false" },
    h("p", { class: r.Ok ? "ok" : "bad" }, r.Ok ? "Keys usable" : "Keys not usable"),
    h("table", {}, r.Steps.map((s) => h("tr", {},
      h("td", { class: s.Ok ? "ok" : "bad" }, s.Ok ? "ok" : "FAIL"), h("td", {}, s.Step), h("td", {}, s.Target), h("td", {}, s.Detail)))),
    r.Keys.length ? h("table", {}, r.Keys.map((k) => h("tr", {},
      h("td", { class: k.Usable ? "ok" : "bad" }, k.Usable ? "usable" : "not usable"),
      h("td", {}, k.Kid || "(no kid)"), h("td", {}, k.Kty || ""), h("td", {}, k.Alg || (k.Algorithms || []).join(", ")), h("td", {}, k.Problem || "")))) : null);
}

// ----- Sidecars -----

async function sidecarsPage() {
  const list = await readable("/v1/tribune/sidecars", []);
  const content = h("div", {}, h("h2", {}, "Sidecars"));
  if (!list.length) {
    content.append(notice("No sidecar has reported to the agent (they report every 10 s)."));
    return content;
  }
  content.append(h("table", { id: "sidecars" },
    // Contact (the sidecar's report, every 10 s) and policy changes apart: a policy
    // unchanged for an hour is not a stale sidecar.
    h("tr", {}, ["Sidecar", "Service", "Policy index", "Policies installed", "Last contact", "Policy changed", "State"].map((x) => h("th", {}, x))),
    list.map((s) => {
      const live = s.SecondsSinceReport <= 30;
      return h("tr", { "data-sidecar": s.Proxy, "data-service": s.Service },
        h("td", {}, s.Proxy), h("td", {}, s.Service),
        h("td", { "data-col": "index" }, String(s.SnapshotIndex)),
        h("td", {}, String(s.SnapshotVersion)),
        h("td", { "data-col": "contact" }, ago(s.SecondsSinceReport)),
        h("td", { "data-col": "policy" }, ago(s.SecondsSincePolicyChange)),
        h("td", { class: live ? "ok" : "bad" }, live ? "connected" : "not reporting"));
    })));
  return content;
}

// ----- Staged -----

// A line diff (longest common subsequence) of two texts.
// The candidate against the live entry, line by line: jsdiff's Myers diff (O(ND):
// 3 000 permissions no longer take seconds, as the quadratic table did).
function diffLines(a, b) {
  const out = [];
  for (const part of Diff.diffLines(a, b)) {
    const op = part.added ? "+" : part.removed ? "-" : " ";
    const lines = part.value.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    for (const line of lines) out.push([op, line]);
  }
  return out;
}

function strip(entry) {
  if (!entry) return null;
  const e = { ...entry };
  // The store's bookkeeping, not what the author wrote.
  delete e.CreateIndex;
  delete e.ModifyIndex;
  delete e.Hash;
  return e;
}

async function stagedPage() {
  const staged = await readable("/v1/tribune/staged", []);
  const content = h("div", {}, h("h2", {}, "Staged policies"));
  if (!staged.length) {
    content.append(notice("No staged candidates (tribune config write -stage FILE)."));
    return content;
  }
  for (const s of staged) {
    const [candidate, live] = await Promise.all([
      api("GET", `/v1/config/${s.Kind}/${encodeURIComponent(s.Name)}?stage=true`),
      readable(`/v1/config/${s.Kind}`, []).then((l) => l.find((e) => e.Name === s.Name)),
    ]);
    const lines = diffLines(live ? pretty(strip(live)) : "", pretty(strip(candidate.Entry || candidate)));
    const outcome = h("div", { class: "outcome" });
    const path = `${s.Kind}/${encodeURIComponent(s.Name)}`;
    // Promote the candidate reviewed here (pinned to its index); a live entry changed
    // since staging is a conflict, shown with the way out.
    const promote = h("button", { class: "primary promote" }, "Promote");
    promote.addEventListener("click", async () => {
      try {
        await api("PUT", `/v1/tribune/staged/${path}/promote?index=${s.StagedIndex}`);
        outcome.replaceChildren(notice(`Promoted: ${s.Kind}/${s.Name} is live.`));
        promote.disabled = unstage.disabled = true;
      } catch (e) {
        outcome.replaceChildren(notice(e instanceof ApiError && e.status === 409
          ? `Not promoted: ${e.body.trim()}` : e.message, true));
      }
    });
    const unstage = h("button", { class: "unstage" }, "Unstage");
    unstage.addEventListener("click", async () => {
      try {
        await api("DELETE", `/v1/config/${path}?stage=true`);
        outcome.replaceChildren(notice(`Unstaged: the candidate for ${s.Kind}/${s.Name} is dropped; the live entry is unchanged.`));
        promote.disabled = unstage.disabled = true;
      } catch (e) {
        outcome.replaceChildren(notice(e.message, true));
      }
    });
    content.append(h("div", { class: "panel", "data-staged": `${s.Kind}/${s.Name}` },
      h("h3", {}, `${s.Kind}/${s.Name}`),
      h("p", { class: "actions" }, promote, " ", unstage),
      outcome,
      h("p", {}, `${s.Seen} requests evaluated by the sidecars, ${s.Changed} decided differently.`,
        s.LiveChanged ? h("span", { class: "warn" }, " The live entry changed since staging: promote needs force.") : ""),
      // Where the candidate decides differently, as the sidecars grouped it.
      (s.Groups || []).length ? h("table", { class: "groups" },
        h("tr", {}, ["Caller", "Method", "Path", "Live → candidate", "Reason", "Requests", "Example"].map((x) => h("th", {}, x))),
        s.Groups.map((g) => h("tr", { "data-caller": g.Caller },
          h("td", {}, g.Caller), h("td", {}, g.Method), h("td", {}, g.PathPrefix),
          h("td", {}, `${g.Live} ${g.LiveStatus} → ${g.Candidate} ${g.CandidateStatus}`),
          h("td", {}, g.Reason), h("td", { "data-col": "count" }, String(g.Count)), h("td", {}, g.Example))))
        : "",
      (s.Sidecars || []).length ? h("table", { class: "reporters" },
        h("tr", {}, ["Reported by (service / sidecar)", "Seen", "Changed"].map((x) => h("th", {}, x))),
        s.Sidecars.map((r) => h("tr", { "data-service": r.Service },
          h("td", {}, `${r.Service} / ${r.Proxy}`), h("td", {}, String(r.Seen)), h("td", {}, String(r.Changed)))))
        : "",
      h("div", { class: "diff" }, lines.map(([op, text]) =>
        h("div", { class: op === "+" ? "add" : op === "-" ? "del" : "" }, `${op} ${text}`)))));
  }
  return content;
}

// ---------- token ----------

// The sign-in in progress (method and the ClientNonce the callback must repeat), and
// the method a token came from (set when a login made it: logging out deletes it).
const OIDC_KEY = "tribune-oidc";
const LOGIN_KEY = "tribune-login";

function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// "Log in with <DisplayName>": the agent gives an auth URL for this page's callback,
// the browser goes to the provider, which sends it back to /ui/oidc/callback.
async function startSignIn(m) {
  const clientNonce = randomHex(16);
  sessionStorage.setItem(OIDC_KEY, JSON.stringify({ method: m.Name, clientNonce }));
  try {
    const r = await api("POST", "/v1/acl/oidc/auth-url", {
      AuthMethod: m.Name, RedirectURI: `${location.origin}/ui/oidc/callback`, ClientNonce: clientNonce,
    });
    location.assign(r.AuthURL);
  } catch (e) {
    sessionStorage.removeItem(OIDC_KEY);
    status(`Sign-in with ${m.DisplayName || m.Name} failed: ${e.body || e.message}`);
  }
}

// Back from the provider: the code and state leave the address bar and history at
// once, then the agent exchanges them for a token kept like a pasted one.
async function finishSignIn() {
  if (location.pathname !== "/ui/oidc/callback") return;
  const q = new URLSearchParams(location.search);
  history.replaceState(null, "", "/ui/");
  const pending = JSON.parse(sessionStorage.getItem(OIDC_KEY) || "null");
  sessionStorage.removeItem(OIDC_KEY);
  if (q.get("error")) {
    status(`The provider refused the sign-in: ${q.get("error")} ${q.get("error_description") || ""}`);
    return;
  }
  if (!pending) {
    status("Sign-in failed: this tab did not start it.");
    return;
  }
  try {
    const t = await api("POST", "/v1/acl/oidc/callback", {
      AuthMethod: pending.method, State: q.get("state") || "", Code: q.get("code") || "", ClientNonce: pending.clientNonce,
    });
    sessionStorage.setItem(TOKEN_KEY, t.SecretID);
    sessionStorage.setItem(LOGIN_KEY, pending.method);
  } catch (e) {
    status(`Sign-in failed: ${e.body || e.message}`);
  }
}

async function setupToken() {
  const input = document.getElementById("token");
  const state = document.getElementById("token-state");
  const logout = document.getElementById("logout");
  const show = () => {
    const method = sessionStorage.getItem(LOGIN_KEY);
    const token = sessionStorage.getItem(TOKEN_KEY);
    state.textContent = token ? (method ? `signed in with ${method}` : "token set for this tab") : "anonymous";
    logout.hidden = !(token && method);
    input.value = token || "";
  };
  await finishSignIn();
  show();
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    else sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(LOGIN_KEY);
    show();
    route();
  });
  logout.addEventListener("click", async () => {
    try {
      await api("POST", "/v1/acl/logout");
    } catch (e) {
      status(`Logout: ${e.body || e.message}`);
    }
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(LOGIN_KEY);
    show();
    route();
  });
  // One "Log in with ..." per OIDC method (none without methods), not waited for.
  api("GET", "/v1/internal/ui/oidc-auth-methods").then((methods) => {
    document.getElementById("sso").replaceChildren(...methods.map((m) =>
      h("button", { type: "button", "data-method": m.Name, onclick: () => startSignIn(m) },
        `Log in with ${m.DisplayName || m.Name}`)));
  }, () => {
    // An agent that cannot list them offers the token field only.
  });
}

window.addEventListener("hashchange", route);
setupToken().then(route);
