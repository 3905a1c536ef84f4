// The console's only way to the node: its public API, with the access token obtained at the
// node's own token endpoint. The session (token, expiry, scopes) lives in sessionStorage: gone
// when the tab closes, never in a URL, cleared at sign-out and when the token expires.

const KEY = 'agentidp.console.session';

/** An error answered by the API: status, stable code, human message. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let session = null;
let expiryTimer = null;
const listeners = new Set();

function load() {
  try {
    const raw = sessionStorage.getItem(KEY);
    const s = raw ? JSON.parse(raw) : null;
    if (s && typeof s.token === 'string' && s.expiresAt > Date.now()) return s;
  } catch { /* unreadable: signed out */ }
  sessionStorage.removeItem(KEY);
  return null;
}

function arm() {
  clearTimeout(expiryTimer);
  if (session) {
    expiryTimer = setTimeout(() => signOut('Your session expired; sign in again.'),
      Math.max(0, Math.min(session.expiresAt - Date.now(), 2 ** 31 - 1)));
  }
}

/** Calls fn(session, reason) whenever the session starts or ends. */
export function onSession(fn) { listeners.add(fn); }

function changed(reason) { for (const fn of listeners) fn(session, reason); }

export function current() {
  if (session && session.expiresAt <= Date.now()) signOut('Your session expired; sign in again.');
  return session;
}

export function hasScope(scope) {
  return !!current() && session.scopes.includes(scope);
}

/** The JWT's claims (for display and scoping only; the node verifies the token). */
function claimsOf(jwt) {
  try {
    const b64 = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
  } catch {
    return {};
  }
}

/** client_credentials at the node's token endpoint (client_secret_post). */
export async function signIn(clientId, secret) {
  const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret });
  const r = await fetch('/api/v1/token', { method: 'POST', body, credentials: 'omit', cache: 'no-store' });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    throw new ApiError(r.status, data.error || data.code || `HTTP_${r.status}`,
      data.error_description || data.message || r.statusText);
  }
  const claims = claimsOf(data.access_token);
  session = {
    token: data.access_token,
    expiresAt: Date.now() + data.expires_in * 1000,
    scopes: (data.scope || '').split(' ').filter(Boolean),
    clientId,
    organizationId: claims.organization_id || '',
    did: claims.did || '',
  };
  try {
    const me = await call('GET', '/agent-info');
    session.name = me.name;
    session.email = me.email;
  } catch { /* the name is cosmetic */ }
  sessionStorage.setItem(KEY, JSON.stringify(session));
  arm();
  changed('signin');
  return session;
}

/** Forgets the token (revoking it at the node too, best effort). */
export function signOut(reason) {
  const old = session;
  session = null;
  sessionStorage.removeItem(KEY);
  clearTimeout(expiryTimer);
  if (old) {
    fetch('/api/v1/token/revoke', {
      method: 'POST',
      headers: { authorization: `Bearer ${old.token}` },
      body: new URLSearchParams({ token: old.token }),
      credentials: 'omit',
    }).catch(() => {});
  }
  changed(reason || 'signout');
}

async function send(method, path, body, accept) {
  const s = current();
  if (!s) throw new ApiError(401, 'SIGNED_OUT', 'Sign in first.');
  const headers = { authorization: `Bearer ${s.token}`, accept };
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    const e = await r.json().catch(() => ({}));
    signOut('The node no longer accepts your token; sign in again.');
    throw new ApiError(401, e.code || 'UNAUTHORIZED', e.message || 'Unauthorized');
  }
  if (!r.ok) {
    const e = await r.json().catch(() => ({}));
    throw new ApiError(r.status, e.code || e.error || `HTTP_${r.status}`,
      e.message || e.error_description || r.statusText || 'Request failed', e.details);
  }
  return r;
}

/** A JSON API call: the parsed body (null for 204). */
export async function call(method, path, body) {
  const r = await send(method, path, body, 'application/json');
  if (r.status === 204) return null;
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

/** A GET answered with a file: its blob and the file name its Content-Disposition gives. */
export async function download(path) {
  const r = await send('GET', path, undefined, '*/*');
  const cd = r.headers.get('content-disposition') || '';
  const m = /filename="?([^";]+)"?/i.exec(cd);
  return { blob: await r.blob(), filename: m ? m[1] : 'download' };
}

/** A public document (no token), parsed as JSON or returned as text. */
export async function fetchPublic(path) {
  const r = await fetch(path, { credentials: 'omit', cache: 'no-store' });
  const text = await r.text();
  let data = text;
  try { data = JSON.parse(text); } catch { /* text */ }
  if (!r.ok) {
    throw new ApiError(r.status, (data && data.code) || `HTTP_${r.status}`, (data && data.message) || r.statusText);
  }
  return data;
}

session = load();
arm();
