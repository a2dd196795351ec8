// Tokens signed by the `jose` npm package, for Tribune's interop test.
// Prints {"issuer", "audience", "jwks", "tokens": [{"alg", "token"}]} on stdout.
import { generateKeyPair, generateSecret, exportJWK, SignJWT } from 'jose';

const issuer = 'https://jose.example';
const audience = 'api';
const now = Math.floor(Date.now() / 1000);
const keys = [];
const tokens = [];

const algs = [
  ['RS256', {}], ['RS384', {}], ['RS512', {}],
  ['PS256', {}], ['PS384', {}], ['PS512', {}],
  ['ES256', {}], ['ES384', {}], ['ES512', {}],
  ['EdDSA', { crv: 'Ed25519' }],
];
for (const [alg, opts] of algs) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { ...opts, extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = `jose-${alg}`;
  keys.push({ ...jwk, kid, alg, use: 'sig' });
  const token = await new SignJWT({ role: 'admin', scope: 'read write' })
    .setProtectedHeader({ alg, kid, typ: 'JWT' })
    .setIssuer(issuer).setAudience(audience).setSubject('alice')
    .setIssuedAt(now).setExpirationTime(now + 600)
    .sign(privateKey);
  tokens.push({ alg, token });
}
for (const alg of ['HS256', 'HS384', 'HS512']) {
  const secret = await generateSecret(alg, { extractable: true });
  const jwk = await exportJWK(secret);
  const kid = `jose-${alg}`;
  keys.push({ ...jwk, kid, alg });
  const token = await new SignJWT({ role: 'admin' })
    .setProtectedHeader({ alg, kid })
    .setIssuer(issuer).setAudience([audience, 'other']).setExpirationTime(now + 600)
    .sign(secret);
  tokens.push({ alg, token });
}
process.stdout.write(JSON.stringify({ issuer, audience, jwks: { keys }, tokens }));
