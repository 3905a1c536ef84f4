// panva/oidc-provider as the baseline of bench/run: one Node process issuing ES256-signed JWT
// access tokens (RFC 9068, `typ: at+jwt`) with the client_credentials grant, like agentidp.
//
//   node server.mjs [port]        port: argv[2], else $PORT, else 3000; listens on 127.0.0.1
//
// env: BENCH_CLIENT_ID / BENCH_CLIENT_SECRET  the one registered client (defaults below; bench/run
//      generates a fresh secret per run), BENCH_RESOURCE  the default resource indicator (= `aud`).
//
// The signing key is a P-256 key generated at startup and passed in `jwks`. JWT access tokens
// are not persisted by oidc-provider (only opaque ones are written to the adapter), so the
// in-memory adapter holds nothing per token; this is the provider's fastest configuration.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PORT ?? 3000);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`server.mjs: invalid port ${JSON.stringify(process.argv[2] ?? process.env.PORT)}`);
  process.exit(2);
}
const host = '127.0.0.1';
const issuer = `http://${host}:${port}`;
const clientId = process.env.BENCH_CLIENT_ID ?? 'bench-client';
const clientSecret = process.env.BENCH_CLIENT_SECRET ?? 'bench-secret-change-me-0123456789abcdef';
const resource = process.env.BENCH_RESOURCE ?? `${issuer}/api`;

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [signingJwk] },
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      // oidc-provider accepts client_secret_basic and client_secret_post interchangeably for a
      // client registered with either of them.
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'api',
    },
  ],
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
  scopes: ['api'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No `resource` parameter in the request: use this one, so that every token is a JWT.
      defaultResource: async () => resource,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== resource) {
          // oidc-provider 9 exports the error classes by name (`Provider.errors` is undefined).
          throw new errors.InvalidTarget();
        }
        return {
          scope: 'api',
          audience: resource,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

provider.on('server_error', (_ctx, err) => console.error('server_error', err));

const server = provider.listen(port, host, () => {
  console.log(`oidc-provider listening on ${issuer} (token endpoint ${issuer}/token)`);
});
server.on('error', (err) => {
  console.error(`server.mjs: cannot listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
