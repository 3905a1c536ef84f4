// Imports the private JWK agentidp generated for an agent with `jose` (panva; WebCrypto), signs
// an RFC 7523 private_key_jwt client assertion with it (one hour of life, the longest the node
// accepts) and asks the node's token endpoint for an access token with it.
// Usage: node assertion.mjs <private-jwk-file> <agent-id> <token-endpoint>
// Prints the token endpoint's HTTP status and JSON body as one JSON line.
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { importJWK, SignJWT } from 'jose';

const [jwkFile, agentId, tokenUrl] = process.argv.slice(2);
const jwk = JSON.parse(readFileSync(jwkFile, 'utf8'));
const key = await importJWK(jwk, jwk.alg);
const assertion = await new SignJWT({})
  .setProtectedHeader({ alg: jwk.alg, kid: jwk.kid, typ: 'JWT' })
  .setIssuer(agentId)
  .setSubject(agentId)
  .setAudience(tokenUrl)
  .setIssuedAt()
  .setExpirationTime('1h')
  .setJti(randomUUID())
  .sign(key);
const res = await fetch(tokenUrl, {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({
    grant_type: 'client_credentials',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  }),
});
console.log(JSON.stringify({ status: res.status, body: await res.json() }));
