// Verifies an Agent Badge the way a DID-JWT verifier does: `did-jwt` finds the issuer's key
// through the JWT's `iss` (the node's did:web), resolved by `web-did-resolver` over HTTPS (the
// test's CA is trusted through NODE_EXTRA_CA_CERTS), then follows the badge's
// `credentialStatus` to the W3C Bitstring Status List credential, verifies that one the same
// way, and reads the badge's bit itself: multibase `u` + base64url, GZIP, bit i = the
// (i mod 8)-th most significant bit of byte floor(i / 8) (Bitstring Status List §3.2).
// Usage: node badge.mjs <badge-url | file:path>
// Prints {iss, sub, kid, statusPurpose, statusListIndex, bit} as one JSON line.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { verifyJWT } from 'did-jwt';
import { Resolver } from 'did-resolver';
import { getResolver } from 'web-did-resolver';

const resolver = new Resolver(getResolver());
// `file:<path>`: a badge the verifier holds (the node may have stopped serving it).
const get = async (url) => {
  if (url.startsWith('file:')) return readFileSync(url.slice(5), 'utf8').trim();
  const r = await fetch(url);
  if (r.status !== 200) throw new Error(`${url} answered ${r.status}`);
  return (await r.text()).trim();
};

const badge = await verifyJWT(await get(process.argv[2]), { resolver });
const status = badge.payload.credentialStatus;
if (!status || status.type !== 'BitstringStatusListEntry') throw new Error('no BitstringStatusListEntry');
const list = await verifyJWT(await get(status.statusListCredential), { resolver });
if (list.issuer !== badge.issuer) throw new Error(`status list issued by ${list.issuer}, badge by ${badge.issuer}`);
const subject = list.payload.credentialSubject;
if (!list.payload.type.includes('BitstringStatusListCredential')) throw new Error('not a BitstringStatusListCredential');
if (subject.statusPurpose !== status.statusPurpose) throw new Error('status purposes differ');
if (!subject.encodedList.startsWith('u')) throw new Error('encodedList is not multibase base64url');
const bits = gunzipSync(Buffer.from(subject.encodedList.slice(1), 'base64url'));
if (bits.length * 8 < 131072) throw new Error(`the list has ${bits.length * 8} bits, fewer than 131072`);
const index = Number(status.statusListIndex);
const bit = (bits[Math.floor(index / 8)] >> (7 - (index % 8))) & 1;
console.log(JSON.stringify({
  iss: badge.issuer,
  sub: badge.payload.sub,
  kid: badge.didResolutionResult && badge.signer.id,
  statusPurpose: status.statusPurpose,
  statusListIndex: index,
  bit,
}));
