// A real OpenID Connect provider (the `oidc-provider` npm package) for Tribune's
// end-to-end suite and the seed-workflow example.
//
//   node oidc.mjs [--port N] [--keys FILE] [--rotate]
//
// - Listens on 127.0.0.1 (port 0 = any free port) with issuer http://127.0.0.1:<port>;
//   prints "READY <issuer>" once serving. The JWKS is at <issuer>/jwks.
// - Client-credentials clients: "admin-client" / "user-client" (secret "secret"),
//   whose JWT access tokens carry perms.role = admin / user.
// - Resource servers (RFC 8707 `resource` parameter): https://api.example (RS256),
//   https://api-es.example (ES256), https://short.example (RS256, 1 s lifetime).
// - Signing keys (RSA + EC P-256) are kept in --keys (default: generated at start);
//   --rotate adds a new RSA key in front, which then signs, keeping the old ones
//   published.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { generateKeyPair, exportJWK } from 'jose';
import http from 'node:http';
import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const port = Number(opt('--port', '0'));
const keysFile = opt('--keys', null);

async function newKey(alg, kid) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
}

let keys = keysFile && existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) : null;
if (!keys) {
  keys = [await newKey('RS256', 'rsa-1'), await newKey('ES256', 'ec-1')];
}
if (args.includes('--rotate')) {
  const n = keys.filter((k) => k.kty === 'RSA').length + 1;
  keys = [await newKey('RS256', `rsa-${n}`), ...keys];
}
if (keysFile) writeFileSync(keysFile, JSON.stringify(keys));

const resources = {
  'https://api.example': { alg: 'RS256', ttl: 600 },
  'https://api-es.example': { alg: 'ES256', ttl: 600 },
  'https://short.example': { alg: 'RS256', ttl: 1 },
};

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: ['admin-client', 'user-client'].map((client_id) => ({
    client_id,
    client_secret: 'secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  })),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://api.example',
      getResourceServerInfo: (ctx, indicator) => {
        const r = resources[indicator];
        if (!r) throw new Provider.errors.InvalidTarget();
        return {
          scope: 'api:read api:write',
          audience: indicator,
          accessTokenTTL: r.ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: r.alg } },
        };
      },
    },
  },
  extraTokenClaims: (ctx, token) => ({
    perms: { role: token.clientId === 'admin-client' ? 'admin' : 'user' },
  }),
  routes: { jwks: '/jwks' },
});
provider.proxy = false;
server.on('request', provider.callback());
process.stdout.write(`READY ${issuer}\n`);
