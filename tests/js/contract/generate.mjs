// Generates the TypeScript client of a running node from its /openapi.json with
// @hey-api/openapi-ts (fetch client, one function per operationId).
// Usage: node generate.mjs <base-url> <output-dir>
import { createClient } from '@hey-api/openapi-ts';

const [base, output] = process.argv.slice(2);
await createClient({
  input: `${base}/openapi.json`,
  output: { path: output, importFileExtension: '.js' },
  plugins: ['@hey-api/client-fetch', '@hey-api/typescript', '@hey-api/sdk'],
  logs: { level: 'error' },
});
