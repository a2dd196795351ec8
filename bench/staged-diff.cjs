// The Staged page's line diff on a 3 000-permission entry (hardening round 3, item
// 16): jsdiff (what the UI embeds) against the quadratic LCS table it replaced.
// Run: node bench/staged-diff.cjs   (after ui/build.sh, which installs jsdiff)
const Diff = require("../ui/node_modules/diff");
function lcsTable(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  const n = x.length, m = y.length;
  const t = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    t[i][j] = x[i] === y[j] ? t[i + 1][j + 1] + 1 : Math.max(t[i + 1][j], t[i][j + 1]);
  }
  return t[0][0];
}
const n = Number(process.argv[2] || 3000);
const perms = Array.from({ length: n }, (_, i) => ({ Action: "allow", HTTP: { PathPrefix: `/p${i}/` } }));
const a = JSON.stringify({ Kind: "service-intentions", Name: "api", Sources: [{ Name: "web", Permissions: perms }] }, null, 2);
const b = a.replace(`"/p${n >> 1}/"`, '"/changed/"');
let t = process.hrtime.bigint();
Diff.diffLines(a, b);
const jsdiff = Number(process.hrtime.bigint() - t) / 1e6;
t = process.hrtime.bigint();
lcsTable(a, b);
const lcs = Number(process.hrtime.bigint() - t) / 1e6;
console.log(`${n} permissions, ${a.split("\n").length} lines: jsdiff ${jsdiff.toFixed(0)} ms, LCS table ${lcs.toFixed(0)} ms (${(lcs / jsdiff).toFixed(0)}x)`);
