// Verifies JWTs issued by an agentidp node with the `jose` library, from the node's JWKS alone.
// stdin: {"jwks": {...}, "checks": [{"token", "typ", "issuer", "audience"}]}
// stdout: one result per check: {"ok": true, "header", "payload"} or {"ok": false, "error"}.
import { createLocalJWKSet, jwtVerify } from 'jose';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const keys = createLocalJWKSet(input.jwks);
const out = [];
for (const c of input.checks) {
  try {
    const { payload, protectedHeader } = await jwtVerify(c.token, keys, {
      issuer: c.issuer,
      audience: c.audience,
      typ: c.typ,
      algorithms: ['ES256', 'RS256'],
    });
    out.push({ ok: true, header: protectedHeader, payload });
  } catch (e) {
    out.push({ ok: false, error: `${e.code || e.name}: ${e.message}` });
  }
}
process.stdout.write(JSON.stringify(out));
