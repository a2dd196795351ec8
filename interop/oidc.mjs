// A real OpenID Connect provider (the `oidc-provider` npm package) for Tribune's
// end-to-end suite and the seed-workflow example.
//
//   node oidc.mjs [--port N] [--keys FILE] [--rotate] [--sign-in REDIRECT_URI]... [--user NAME]
//
// - Listens on 127.0.0.1 (port 0 = any free port) with issuer http://127.0.0.1:<port>;
//   prints "READY <issuer>" once serving. The JWKS is at <issuer>/jwks.
// - Client-credentials clients: "admin-client" / "user-client" (secret "secret"),
//   whose JWT access tokens carry perms.role = admin / user.
// - Resource servers (RFC 8707 `resource` parameter): https://api.example (RS256),
//   https://api-es.example (ES256), https://short.example (RS256, 1 s lifetime).
// - With --sign-in: an authorization-code client "tribune" (secret "tribune-secret",
//   client_secret_basic, PKCE) redirecting to the URIs given; its sign-ins log in the
//   account --user (default "alice", groups ["ops"]) at once, without a form, and
//   consent to the scopes asked (openid, email, groups); the ID token carries the
//   claims.
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
const signIn = args.flatMap((a, i) => (a === '--sign-in' ? [args[i + 1]] : []));
const user = opt('--user', 'alice');
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
  clients: [
    ...['admin-client', 'user-client'].map((client_id) => ({
      client_id,
      client_secret: 'secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
    })),
    ...(signIn.length
      ? [{
          client_id: 'tribune',
          client_secret: 'tribune-secret',
          grant_types: ['authorization_code'],
          response_types: ['code'],
          redirect_uris: signIn,
          token_endpoint_auth_method: 'client_secret_basic',
        }]
      : []),
  ],
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, email: `${id}@example.com`, groups: id === 'alice' ? ['ops'] : ['guests'] }),
  }),
  claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
  scopes: ['openid', 'email', 'groups'],
  conformIdTokenClaims: false,
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
const handle = provider.callback();
// Sign-ins finish at once: the account logs in and consents to what was asked.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  let result;
  if (details.prompt.name === 'login') {
    result = { login: { accountId: user } };
  } else {
    const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    grant.addOIDCScope(String(details.params.scope));
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    });
  } else {
    handle(req, res);
  }
});
process.stdout.write(`READY ${issuer}\n`);
