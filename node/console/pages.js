// The console's pages. Each renders into the <main> element from what the public API answers;
// every action is an API call with the signed-in token, and every API error is shown with its
// code and message.

import { h, put, field, select, table, facts, json, pill, toast } from './dom.js';
import { call, download, fetchPublic, hasScope, current, ApiError } from './api.js';
import { lineChart, heatmap } from './charts.js';

const AGENT_TYPES = ['screener', 'classifier', 'orchestrator', 'extractor', 'summarizer', 'router', 'monitor', 'custom'];
const ENVS = ['development', 'staging', 'production'];
const TENANT_SCOPES = ['agents:read', 'agents:write', 'audit:read', 'webhooks:read', 'webhooks:write'];
const LANGUAGES = [['typescript', 'TypeScript'], ['python', 'Python'], ['go', 'Go'], ['java', 'Java'], ['rust', 'Rust']];

const enc = encodeURIComponent;

/** An API error as the user sees it: code and message. */
export function errorBox(e) {
  const code = e instanceof ApiError ? e.code : 'CONSOLE_ERROR';
  const status = e instanceof ApiError && e.status ? ` (HTTP ${e.status})` : '';
  return h('div', { class: 'error', role: 'alert' },
    h('strong', { class: 'error-code' }, code), status, ': ',
    h('span', { class: 'error-message' }, e.message || String(e)));
}

/** A section whose content loads from the API; errors shown in place. */
function section(title, load, opts = {}) {
  const body = h('div', { class: 'section-body', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const sec = h('section', { class: 'card', 'aria-label': title, 'data-section': opts.id || title },
    h('h2', {}, title), body);
  const reload = async () => {
    body.setAttribute('aria-busy', 'true');
    try {
      put(body, await load(reload));
    } catch (e) {
      put(body, errorBox(e));
    }
    body.removeAttribute('aria-busy');
  };
  reload();
  return sec;
}

/** Runs an action, showing its error in `where` (or a toast). */
async function act(where, fn) {
  if (where) put(where);
  try {
    return await fn();
  } catch (e) {
    if (where) put(where, errorBox(e)); else toast(`${e.code || 'ERROR'}: ${e.message}`);
    return undefined;
  }
}

function btn(label, onclick, kind, attrs = {}) {
  return h('button', { type: 'button', class: ['btn', kind && `btn-${kind}`], onclick, ...attrs }, label);
}

function link(href, text) { return h('a', { href }, text); }

function when(t) { return t ? t.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC') : '—'; }

function statusPill(st) {
  const kind = { active: 'ok', success: 'ok', delivered: 'ok', valid: 'ok', revoked: 'bad', decommissioned: 'bad', failed: 'bad', failure: 'bad', suspended: 'warn', expired: 'warn', pending: 'warn' }[st];
  return pill(st, kind);
}

/** A secret shown once: in the page until dismissed, stored nowhere. */
function secretOnce(title, pairs) {
  const box = h('div', { class: 'secret', role: 'region', 'aria-label': title },
    h('h3', {}, title),
    h('p', {}, 'Copy it now: the node keeps only a hash and will not show it again.'),
    facts(pairs.map(([k, v]) => [k, h('code', { class: 'secret-value', 'data-secret': k }, v)])));
  const secret = pairs[pairs.length - 1][1];
  box.append(h('div', { class: 'row' },
    btn('Copy', () => navigator.clipboard.writeText(secret).then(() => toast('Copied.'), () => toast('Copy failed; select the text instead.'))),
    btn('Done', () => box.remove(), 'quiet')));
  return box;
}

function dataOf(r) { return Array.isArray(r) ? r : (r && Array.isArray(r.data) ? r.data : []); }

function formValues(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) {
    if (k in out) out[k] = [].concat(out[k], v); else out[k] = v;
  }
  return out;
}

function list(text) { return text.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean); }

// ---------- agents ----------

// The private key the node generated at registration, shown once on the agent's page (kept in
// this variable only until that page takes it).
let oneTime = null;

function registerForm(onDone) {
  const msg = h('div', { 'aria-live': 'polite' });
  const myScopes = current().scopes.filter((sc) => TENANT_SCOPES.includes(sc));
  const form = h('form', { class: 'grid-form', 'aria-label': 'Register an agent' },
    field('Email', h('input', { name: 'email', type: 'email', required: true, autocomplete: 'off' })),
    field('Name', h('input', { name: 'name', maxlength: '256' }), 'Defaults to the email'),
    field('Type', select('agentType', AGENT_TYPES, 'custom')),
    field('Version', h('input', { name: 'version', value: '1.0.0', required: true })),
    field('Owner', h('input', { name: 'owner', required: true, value: current().email || '' })),
    field('Environment', select('deploymentEnv', ENVS, 'development')),
    field('Endpoints', h('input', { name: 'endpoints', placeholder: 'https://agent.example/a2a' }), 'A2A endpoints, comma-separated (a card needs one and a skill)'),
    field('Skills', h('input', { name: 'skills', placeholder: '10201:natural_language_processing/summarization' }), 'OASF skills as id:name, comma-separated'),
    field('Description', h('input', { name: 'description', maxlength: '1024' })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'public', value: 'yes' }), 'Listed in the public directory'),
    h('fieldset', { class: 'scopes' }, h('legend', {}, 'Scopes'),
      myScopes.map((sc) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'scopes', value: sc, checked: sc === 'agents:read' }), sc))),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Register')),
    msg);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = formValues(form);
    const body = {
      email: v.email, agentType: v.agentType, version: v.version, owner: v.owner, deploymentEnv: v.deploymentEnv,
      scopes: [].concat(v.scopes || []),
    };
    if (v.name) body.name = v.name;
    if (v.endpoints) body.endpoints = list(v.endpoints);
    if (v.description) body.description = v.description;
    if (v.public) body.public = true;
    act(msg, async () => {
      if (v.skills) {
        body.skills = list(v.skills).map((x) => {
          const m = /^(\d+):(.+)$/.exec(x);
          if (!m) throw new ApiError(0, 'CONSOLE_INPUT', `Skill "${x}" is not id:name, like 10201:natural_language_processing/summarization.`);
          return { id: Number(m[1]), name: m[2] };
        });
      }
      const a = await call('POST', '/api/v1/agents', body);
      if (a.generatedKey) oneTime = { agentId: a.agentId, key: a.generatedKey };
      toast(`Registered ${a.name}.`);
      onDone(a);
    });
  });
  return form;
}

export function agents(main, params) {
  const q = new URLSearchParams(params.query || '');
  const state = { page: Number(q.get('page')) || 1, status: q.get('status') || '', agentType: q.get('agentType') || '', owner: q.get('owner') || '', search: '' };
  const results = h('div', {});
  const search = h('input', { type: 'search', name: 'search', placeholder: 'name, email, id or DID' });
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter agents' },
    field('Search', search),
    field('Status', select('status', [['', 'any'], 'active', 'suspended', 'decommissioned'], state.status)),
    field('Type', select('agentType', [['', 'any'], ...AGENT_TYPES], state.agentType)),
    field('Owner', h('input', { name: 'owner', value: state.owner })),
    h('button', { type: 'submit', class: 'btn' }, 'Apply'));
  let rows = [];
  let page = null;
  const render = () => {
    const needle = state.search.toLowerCase();
    const shown = rows.filter((a) => !needle || [a.name, a.email, a.agentId, a.did].some((x) => (x || '').toLowerCase().includes(needle)));
    const pages = page ? Math.max(1, Math.ceil(page.total / page.limit)) : 1;
    put(results,
      table(`Agents (${page ? page.total : 0} in all, page ${state.page} of ${pages})`, [
        ['Name', (a) => link(`#/agents/${a.agentId}`, a.name)],
        ['Email', (a) => a.email],
        ['Type', (a) => a.agentType],
        ['Status', (a) => statusPill(a.status)],
        ['Environment', (a) => a.deploymentEnv],
        ['Registered', (a) => when(a.createdAt)],
      ], shown, needle ? 'No agent on this page matches.' : 'No agents yet.'),
      h('div', { class: 'row pager' },
        btn('Previous page', () => { state.page -= 1; load(); }, 'quiet', { disabled: state.page <= 1 }),
        btn('Next page', () => { state.page += 1; load(); }, 'quiet', { disabled: state.page >= pages })));
  };
  const load = () => act(results, async () => {
    const p = new URLSearchParams({ page: state.page, limit: 50 });
    for (const k of ['status', 'agentType', 'owner']) if (state[k]) p.set(k, state[k]);
    page = await call('GET', `/api/v1/agents?${p}`);
    rows = page.data;
    render();
  });
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = formValues(filters);
    Object.assign(state, { status: v.status, agentType: v.agentType, owner: v.owner, page: 1 });
    load();
  });
  search.addEventListener('input', () => { state.search = search.value; if (page) render(); });
  put(main, h('h1', {}, 'Agents'),
    hasScope('agents:write') ? h('details', { class: 'card' }, h('summary', {}, 'Register an agent'),
      registerForm((a) => { location.hash = `#/agents/${a.agentId}`; })) : null,
    filters, results);
  load();
}

async function verifyCardSignature(card) {
  const sig = Array.isArray(card.signatures) ? card.signatures[0] : null;
  if (!sig) return { state: 'unsigned', text: 'No signature' };
  const header = JSON.parse(atob(sig.protected.replace(/-/g, '+').replace(/_/g, '/')));
  if (!globalThis.crypto || !crypto.subtle) return { state: 'unknown', text: `Signed (kid ${header.kid}); this page is not a secure context, so the browser cannot check it` };
  const clean = (v) => {
    if (typeof v === 'string') return v === '' ? undefined : v;
    if (Array.isArray(v)) { const a = v.map(clean).filter((x) => x !== undefined); return a.length ? a : undefined; }
    if (v && typeof v === 'object') {
      const o = {};
      for (const [k, x] of Object.entries(v)) { const c = clean(x); if (c !== undefined) o[k] = c; }
      return Object.keys(o).length ? o : undefined;
    }
    return v;
  };
  const jcs = (v) => {
    if (Array.isArray(v)) return `[${v.map(jcs).join(',')}]`;
    if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${jcs(v[k])}`).join(',')}}`;
    return JSON.stringify(v);
  };
  const top = { ...card };
  delete top.signatures;
  const b64u = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const canonical = new TextEncoder().encode(jcs(clean(top) || {}));
  const input = new TextEncoder().encode(`${sig.protected}.${b64u(canonical)}`);
  const jwks = await fetchPublic('/.well-known/jwks.json');
  const jwk = (jwks.keys || []).find((k) => k.kid === header.kid);
  if (!jwk) return { state: 'bad', text: `Signed with kid ${header.kid}, which is not in the node's JWKS` };
  const algo = header.alg === 'ES256' ? { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const key = await crypto.subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, n: jwk.n, e: jwk.e }, algo, false, ['verify']);
  const raw = atob(sig.signature.replace(/-/g, '+').replace(/_/g, '/'));
  const ok = await crypto.subtle.verify(algo, key, Uint8Array.from(raw, (c) => c.charCodeAt(0)), input);
  return ok ? { state: 'ok', text: `Valid ${header.alg} signature by the node's key ${header.kid}` } : { state: 'bad', text: `Signature does NOT verify (kid ${header.kid})` };
}

function credentialsSection(id) {
  const out = h('div', { 'aria-live': 'polite' });
  return section('Credentials', async (reload) => {
    const creds = dataOf(await call('GET', `/api/v1/agents/${id}/credentials`));
    const write = hasScope('agents:write');
    const shown = (c) => { put(out, secretOnce('New client secret', [['Client id', c.clientId], ['Credential', c.credentialId], ['Client secret', c.clientSecret]])); reload(); };
    return [
      write ? h('div', { class: 'row' }, btn('Generate credential', () => act(out, async () => shown(await call('POST', `/api/v1/agents/${id}/credentials`))), 'primary')) : null,
      out,
      table('Credentials (secrets are never listed)', [
        ['Credential', (c) => h('code', {}, c.credentialId)],
        ['Status', (c) => statusPill(c.status)],
        ['Created', (c) => when(c.createdAt)],
        ['Expires', (c) => when(c.expiresAt)],
        ['Revoked', (c) => (c.revokedAt ? when(c.revokedAt) : '')],
        ['', (c) => (write && c.status === 'active' ? h('span', { class: 'row' },
          btn('Rotate', () => act(out, async () => shown(await call('POST', `/api/v1/agents/${id}/credentials/${c.credentialId}/rotate`, { graceSeconds: 0 }))), 'quiet', { 'aria-label': `Rotate credential ${c.credentialId}` }),
          btn('Revoke', () => confirm('Revoke this credential? Clients using it stop working.') && act(out, async () => { await call('DELETE', `/api/v1/agents/${id}/credentials/${c.credentialId}`); toast('Credential revoked.'); reload(); }), 'danger', { 'aria-label': `Revoke credential ${c.credentialId}` })) : '')],
      ], creds, 'No credentials.'),
    ];
  }, { id: 'credentials' });
}

function keysSection(id) {
  const out = h('div', {});
  return section('Keys', async (reload) => {
    const keys = dataOf(await call('GET', `/api/v1/agents/${id}/keys`));
    const write = hasScope('agents:write');
    const area = h('textarea', { name: 'jwk', rows: '3', placeholder: '{"kty":"EC","crv":"P-256","x":"…","y":"…"}' });
    const form = h('form', { class: 'inline-form', 'aria-label': 'Add a public key' }, field('Public JWK', area), h('button', { type: 'submit', class: 'btn' }, 'Add key'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      act(out, async () => {
        let jwk;
        try { jwk = JSON.parse(area.value); } catch { throw new ApiError(0, 'MALFORMED_JSON', 'The key is not JSON.'); }
        await call('POST', `/api/v1/agents/${id}/keys`, { jwk });
        toast('Key added.');
        reload();
      });
    });
    return [
      table('Public keys in the DID document', [
        ['kid', (k) => h('code', {}, k.kid)],
        ['Type', (k) => [k.kty || k.jwk?.kty, k.crv || k.jwk?.crv].filter(Boolean).join(' ')],
        ['Added', (k) => when(k.createdAt || k.addedAt)],
        ['', (k) => (write ? btn('Remove', () => confirm('Remove this key?') && act(out, async () => { await call('DELETE', `/api/v1/agents/${id}/keys/${enc(k.kid)}`); reload(); }), 'danger', { 'aria-label': `Remove key ${k.kid}` }) : '')],
      ], keys, 'No keys.'),
      write ? form : null, out,
    ];
  }, { id: 'keys' });
}

function mark(el, direction) {
  const t = el.querySelector('table');
  if (t) t.setAttribute('data-direction', direction);
  return el;
}

function delegationsSection(id) {
  return section('Delegations', async () => {
    const items = dataOf(await call('GET', `/api/v1/agents/${id}/delegations`));
    const cols = (other, key) => [
      ['Chain', (d) => h('code', {}, d.id)],
      [other, (d) => link(`#/agents/${d[key]}`, d[key])],
      ['Scopes', (d) => (d.scopes || []).join(' ')],
      ['Status', (d) => statusPill(d.status)],
      ['Expires', (d) => when(d.expiresAt)],
    ];
    return [
      h('h3', {}, 'Given'), mark(table('Delegations this agent gave', cols('To', 'delegateeAgentId'), items.filter((d) => d.direction === 'given'), 'None given.'), 'given'),
      h('h3', {}, 'Received'), mark(table('Delegations this agent received', cols('From', 'delegatorAgentId'), items.filter((d) => d.direction === 'received'), 'None received.'), 'received'),
      items.some((d) => d.direction === 'principal') ? [h('h3', {}, 'As principal'), table('Chains acting for this agent', cols('Delegatee', 'delegateeAgentId'), items.filter((d) => d.direction === 'principal'))] : null,
    ];
  }, { id: 'delegations' });
}

function scaffoldSection(id) {
  const out = h('div', { 'aria-live': 'polite' });
  const get = (lang, label) => act(out, async () => {
    const { blob, filename } = await download(`/api/v1/sdk/scaffold/${id}?language=${lang}`);
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: filename || `agent-${lang}.zip`, class: 'hidden' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    put(out, h('p', { class: 'ok', 'data-download': lang }, `Downloaded ${filename} (${blob.size} bytes, ${label}).`));
  });
  return h('section', { class: 'card', 'aria-label': 'Starter project', 'data-section': 'scaffold' },
    h('h2', {}, 'Starter project'),
    h('p', {}, 'A small project that obtains a token for this agent and calls /agent-info (no secret inside).'),
    h('div', { class: 'row' }, LANGUAGES.map(([lang, label]) => btn(`Download ${label}`, () => get(lang, label), '', { 'data-language': lang }))),
    out);
}

export function agentDetail(main, params) {
  const id = params.id;
  const head = h('div', {});
  let generated = null;
  if (oneTime && oneTime.agentId === id) {
    const k = oneTime.key;
    oneTime = null;
    generated = secretOnce('Private key generated at registration', [['kid', k.kid], ['Algorithm', k.alg], ['Private JWK', JSON.stringify(k.privateJwk || k.jwk || k)]]);
  }
  put(main, h('p', {}, link('#/agents', '← Agents')), generated, head);
  act(head, async () => {
    const a = await call('GET', `/api/v1/agents/${id}`);
    const msg = h('div', {});
    const write = hasScope('agents:write');
    const setStatus = (status) => act(msg, async () => { await call('PATCH', `/api/v1/agents/${id}`, { status }); agentDetail(main, params); });
    put(head,
      h('h1', { class: 'agent-name' }, a.name, ' ', statusPill(a.status)),
      facts([['Agent id', h('code', {}, a.agentId)], ['DID', h('code', {}, a.did)], ['Email', a.email], ['Type', a.agentType],
        ['Version', a.version], ['Owner', a.owner], ['Environment', a.deploymentEnv], ['Scopes', a.scopes.join(' ')],
        ['Endpoints', a.endpoints.join(' ')], ['Skills', a.skills.map((x) => x.name).join(', ')], ['Public', a.public ? 'yes' : 'no'],
        ['Registered', when(a.createdAt)], ['Last authenticated', when(a.lastAuthAt)]]),
      write && a.status !== 'decommissioned' ? h('div', { class: 'row' },
        a.status === 'active' ? btn('Suspend', () => setStatus('suspended'), 'quiet') : btn('Reactivate', () => setStatus('active'), 'quiet'),
        btn('Decommission', () => confirm(`Decommission ${a.name}? This cannot be undone.`) && act(msg, async () => { await call('DELETE', `/api/v1/agents/${id}`); agentDetail(main, params); }), 'danger')) : null,
      msg,
      h('div', { class: 'cards' },
        section('DID document', async () => json(await fetchPublic(`/agents/${id}/did.json`), 'DID document'), { id: 'did' }),
        section('A2A agent card', async () => {
          const card = await fetchPublic(`/agents/${id}/.well-known/agent-card.json`);
          let v;
          try { v = await verifyCardSignature(card); } catch (e) { v = { state: 'bad', text: `Cannot check the signature: ${e.message}` }; }
          return [h('p', { class: `sig sig-${v.state}`, 'data-signature': v.state }, v.text), json(card, 'A2A card')];
        }, { id: 'card' }),
        section('OASF record', async () => json(await fetchPublic(`/agents/${id}/oasf.json`), 'OASF record'), { id: 'oasf' }),
        section('Agent Badge', async () => {
          const badge = await fetchPublic(`/agents/${id}/badge`);
          const r = await call('POST', '/api/v1/badges/verify', { badge: String(badge).trim() });
          return [h('p', { class: 'sig sig-ok', 'data-badge': 'valid' }, 'The node verifies this badge.'), json(r, 'Badge verification')];
        }, { id: 'badge' }),
        credentialsSection(id),
        keysSection(id),
        delegationsSection(id),
        scaffoldSection(id)));
  });
}

// ---------- organizations (instance admin) ----------

export function orgs(main) {
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'grid-form', 'aria-label': 'Create an organization' },
    field('Name', h('input', { name: 'name', required: true })),
    field('Slug', h('input', { name: 'slug', required: true, pattern: '[a-z0-9-]{1,64}' }), 'lowercase letters, digits, hyphens'),
    field('Plan', select('planTier', ['free', 'pro', 'enterprise'], 'free')),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create')));
  let reloadList = () => {};
  const listSec = section('Organizations', async (reload) => {
    reloadList = reload;
    const page = await call('GET', '/api/v1/organizations?limit=100');
    return table(`Organizations (${page.total})`, [
      ['Name', (o) => link(`#/orgs/${o.organizationId}`, o.name)], ['Slug', (o) => o.slug], ['Plan', (o) => o.planTier],
      ['Status', (o) => statusPill(o.status)], ['Max agents', (o) => o.maxAgents ?? '∞'], ['Created', (o) => when(o.createdAt)],
    ], page.data);
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(out, async () => {
      const r = await call('POST', '/api/v1/organizations', formValues(form));
      put(out, secretOnce(`Admin credential of ${r.name}`, [['Client id', r.admin.credential.clientId], ['Client secret', r.admin.credential.clientSecret]]));
      reloadList();
    });
  });
  put(main, h('h1', {}, 'Organizations'), h('details', { class: 'card' }, h('summary', {}, 'Create an organization'), form), out, listSec);
}

export function orgDetail(main, params) {
  const id = params.id;
  const out = h('div', {});
  const form = h('form', { class: 'inline-form', 'aria-label': 'Add a member' },
    field('Agent id', h('input', { name: 'agentId', required: true })), field('Role', select('role', ['member', 'admin'], 'member')),
    h('button', { type: 'submit', class: 'btn' }, 'Add member'));
  const members = section('Members', async (reload) => {
    form.onsubmit = (ev) => { ev.preventDefault(); act(out, async () => { await call('POST', `/api/v1/organizations/${id}/members`, formValues(form)); reload(); }); };
    return table('Members', [
      ['Agent', (m) => h('code', {}, m.agentId)], ['Role', (m) => m.role], ['Joined', (m) => when(m.joinedAt)],
      ['', (m) => btn('Remove', () => act(out, async () => { await call('DELETE', `/api/v1/organizations/${id}/members/${m.agentId}`); reload(); }), 'danger', { 'aria-label': `Remove member ${m.agentId}` })],
    ], dataOf(await call('GET', `/api/v1/organizations/${id}/members`)), 'No members.');
  });
  put(main, h('p', {}, link('#/orgs', '← Organizations')),
    section('Organization', async () => {
      const o = await call('GET', `/api/v1/organizations/${id}`);
      return [h('h1', {}, o.name), facts([['Id', h('code', {}, o.organizationId)], ['Slug', o.slug], ['Plan', o.planTier], ['Status', statusPill(o.status)],
        ['Max agents', o.maxAgents ?? 'unlimited'], ['Tokens a month', o.maxTokensPerMonth ?? 'unlimited'], ['Requests a minute', o.rateLimitPerMinute ?? 'unlimited'],
        ['In the directory', o.directoryListed ? 'yes' : 'no'], ['Created', when(o.createdAt)]])];
    }), members, form, out);
}

// ---------- federation ----------

export function federation(main) {
  const out = h('div', {});
  const form = h('form', { class: 'grid-form', 'aria-label': 'Trust a partner issuer' },
    field('Name', h('input', { name: 'name', required: true })),
    field('Issuer', h('input', { name: 'issuer', required: true, placeholder: 'https://issuer.example' })),
    field('JWKS URI', h('input', { name: 'jwksUri' }), 'Optional: otherwise discovered from the issuer'),
    field('Audience', h('input', { name: 'audience' })),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Add partner')), out);
  const partners = section('Partners', async (reload) => {
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const v = formValues(form);
      for (const k of ['jwksUri', 'audience']) if (!v[k]) delete v[k];
      act(out, async () => { await call('POST', '/api/v1/federation/trust', v); reload(); });
    };
    return table('Federation partners', [
      ['Name', (p) => p.name], ['Issuer', (p) => h('code', {}, p.issuer)], ['Keys', (p) => p.jwksUri || p.keySource],
      ['Status', (p) => statusPill(p.status)], ['Source', (p) => p.source],
      ['', (p) => (p.source === 'local' || !p.source ? btn('Remove', () => confirm(`Stop trusting ${p.name}?`) && act(out, async () => { await call('DELETE', `/api/v1/federation/partners/${p.id}`); reload(); }), 'danger', { 'aria-label': `Remove partner ${p.name}` }) : '')],
    ], dataOf(await call('GET', '/api/v1/federation/partners')), 'No partners.');
  });
  const gossip = section('Gossip of trust anchors', async () => {
    const g = await call('GET', '/api/v1/federation/gossip');
    const rest = { ...g };
    for (const k of ['enabled', 'compiled', 'nodeDid', 'publish', 'peerId']) delete rest[k];
    return [facts([['Enabled', g.enabled ? 'yes' : 'no'], ['Compiled in', g.compiled === false ? 'no' : 'yes'], ['Node DID', g.nodeDid], ['Publishes', g.publish ? 'yes' : 'no'], ['Peer id', g.peerId]]),
      Object.keys(rest).length ? json(rest, 'Gossip state') : null];
  });
  put(main, h('h1', {}, 'Federation'), h('details', { class: 'card' }, h('summary', {}, 'Trust a partner issuer'), form), partners, gossip);
}

// ---------- trust policies ----------

export function policies(main) {
  const out = h('div', {});
  const form = h('form', { class: 'grid-form', 'aria-label': 'Create a trust policy' },
    field('Agent id', h('input', { name: 'agentId', required: true })),
    field('Issuer', h('input', { name: 'issuer', required: true, value: 'https://token.actions.githubusercontent.com' })),
    field('Subject', h('input', { name: 'subject', required: true, placeholder: 'repo:acme/app:ref:refs/heads/main' })),
    field('Audience', h('input', { name: 'audience' })),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create')), out);
  const listSec = section('Trust policies', async (reload) => {
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const v = formValues(form);
      if (!v.audience) delete v.audience;
      act(out, async () => { await call('POST', '/api/v1/oidc/trust-policies', v); reload(); });
    };
    return table('Trust policies for token exchange', [
      ['Issuer', (p) => h('code', {}, p.issuer)], ['Subject', (p) => h('code', {}, p.subject)], ['Audience', (p) => p.audience || ''],
      ['Agent', (p) => link(`#/agents/${p.agentId}`, p.agentId)], ['Scopes', (p) => p.scopes.join(' ')], ['Created', (p) => when(p.createdAt)],
      ['', (p) => (hasScope('agents:write') ? btn('Delete', () => act(out, async () => { await call('DELETE', `/api/v1/oidc/trust-policies/${p.id}`); reload(); }), 'danger', { 'aria-label': `Delete policy ${p.id}` }) : '')],
    ], dataOf(await call('GET', '/api/v1/oidc/trust-policies')), 'No trust policies.');
  });
  put(main, h('h1', {}, 'Trust policies'), hasScope('agents:write') ? h('details', { class: 'card' }, h('summary', {}, 'Create a trust policy'), form) : null, listSec);
}

// ---------- webhooks ----------

export function webhooks(main) {
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'grid-form', 'aria-label': 'Add a webhook' },
    field('Name', h('input', { name: 'name', required: true })),
    field('URL', h('input', { name: 'url', type: 'url', required: true, placeholder: 'https://hooks.example/agentidp' })),
    field('Events', h('input', { name: 'events', required: true, value: 'agent.created' }), 'comma-separated event types'),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Add webhook')));
  const listSec = section('Subscriptions', async (reload) => {
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const v = formValues(form);
      act(out, async () => {
        const w = await call('POST', '/api/v1/webhooks', { name: v.name, url: v.url, events: list(v.events) });
        put(out, secretOnce(`Signing secret of ${w.name}`, [['Webhook', w.id], ['Signing secret', w.signingSecret]]));
        reload();
      });
    };
    return table('Webhook subscriptions', [
      ['Name', (w) => link(`#/webhooks/${w.id}`, w.name)], ['URL', (w) => h('code', {}, w.url)], ['Events', (w) => w.events.join(' ')],
      ['Active', (w) => (w.active ? pill('active', 'ok') : pill(w.disabledReason || 'inactive', 'warn'))], ['Failures', (w) => w.failureCount],
    ], dataOf(await call('GET', '/api/v1/webhooks')), 'No webhooks.');
  });
  put(main, h('h1', {}, 'Webhooks'), hasScope('webhooks:write') ? h('details', { class: 'card' }, h('summary', {}, 'Add a webhook'), form) : null, out, listSec);
}

export function webhookDetail(main, params) {
  const id = params.id;
  const out = h('div', { 'aria-live': 'polite' });
  const write = hasScope('webhooks:write');
  const statusSel = select('status', [['', 'any'], 'pending', 'delivered', 'failed'], '');
  const deliveries = section('Delivery log', async (reload) => {
    statusSel.onchange = reload;
    const p = new URLSearchParams({ limit: 50 });
    if (statusSel.value) p.set('status', statusSel.value);
    const page = await call('GET', `/api/v1/webhooks/${id}/deliveries?${p}`);
    return [field('Status', statusSel), table(`Deliveries (${page.total})`, [
      ['Event', (d) => d.eventType], ['Status', (d) => statusPill(d.status)], ['HTTP', (d) => d.httpStatusCode ?? ''],
      ['Attempts', (d) => d.attemptCount], ['Last error', (d) => d.lastError || ''], ['Created', (d) => when(d.createdAt)],
      ['', (d) => (write && d.status === 'failed' ? btn('Retry', () => act(out, async () => { await call('POST', `/api/v1/webhooks/${id}/deliveries/${d.id}/retry`); toast('Queued for retry.'); reload(); }), 'quiet', { 'aria-label': `Retry delivery ${d.id}` }) : '')],
    ], page.deliveries || [], 'No deliveries.')];
  });
  put(main, h('p', {}, link('#/webhooks', '← Webhooks')),
    section('Webhook', async () => {
      const w = await call('GET', `/api/v1/webhooks/${id}`);
      return [h('h1', {}, w.name), facts([['Id', h('code', {}, w.id)], ['URL', h('code', {}, w.url)], ['Events', w.events.join(' ')],
        ['Active', w.active ? 'yes' : 'no'], ['Disabled because', w.disabledReason], ['Failures', w.failureCount], ['Created', when(w.createdAt)]]),
      write ? h('div', { class: 'row' },
        btn('Send a test event', () => act(out, async () => { await call('POST', `/api/v1/webhooks/${id}/test`); toast('Test event queued.'); })),
        btn('Rotate signing secret', () => act(out, async () => { const r = await call('POST', `/api/v1/webhooks/${id}/rotate-secret`); put(out, secretOnce('New signing secret', [['Signing secret', r.signingSecret]])); }), 'quiet'),
        btn('Delete', () => confirm('Delete this webhook?') && act(out, async () => { await call('DELETE', `/api/v1/webhooks/${id}`); location.hash = '#/webhooks'; }), 'danger')) : null];
    }), out, deliveries);
}

// ---------- audit ----------

export function audit(main) {
  const result = h('div', { 'aria-live': 'polite' });
  const rows = h('div', {});
  const full = hasScope('admin:orgs') ? h('input', { type: 'checkbox', name: 'full' }) : null;
  const verify = h('div', { class: 'card' }, h('h2', {}, 'Chain verification'),
    h('p', {}, 'Recomputes the hash chain of the log on the node.'),
    h('div', { class: 'row' }, btn('Verify the chain', () => act(result, async () => {
      const r = await call('GET', `/api/v1/audit/verify${full && full.checked ? '?full=true' : ''}`);
      put(result, h('div', { class: ['verdict', r.valid ? 'verdict-ok' : 'verdict-bad'], 'data-valid': String(r.valid), role: 'status' },
        h('strong', {}, r.valid ? 'Chain intact' : 'Chain BROKEN'),
        facts([['Entries checked', r.entries], ['Head hash', h('code', {}, r.headHash)], ['First broken entry', r.firstBrokenSeq], ['Reason', r.reason]])));
    }), 'primary'), full ? h('label', { class: 'check' }, full, 'whole log (all organizations)') : null),
    result);
  const filters = h('form', { class: 'filters', 'aria-label': 'Filter the audit log' },
    field('Action', h('input', { name: 'action', placeholder: 'agent.register' })),
    field('Actor', h('input', { name: 'actor' })),
    field('Target', h('input', { name: 'target' })),
    field('From', h('input', { name: 'from', type: 'datetime-local' })),
    field('To', h('input', { name: 'to', type: 'datetime-local' })),
    h('button', { type: 'submit', class: 'btn' }, 'Apply'));
  let entries = [];
  let cursor = null;
  const load = (more) => act(rows, async () => {
    const v = formValues(filters);
    const p = new URLSearchParams({ limit: 100 });
    for (const k of ['action', 'actor', 'target']) if (v[k]) p.set(k, v[k]);
    for (const k of ['from', 'to']) if (v[k]) p.set(k, new Date(v[k]).toISOString());
    if (more && cursor) p.set('cursor', cursor); else entries = [];
    const page = await call('GET', `/api/v1/audit?${p}`);
    entries = entries.concat(page.data);
    cursor = page.nextCursor || null;
    put(rows, table(`Audit entries (${entries.length} shown, newest first)`, [
      ['#', (e) => e.seq], ['Time', (e) => when(e.time)], ['Actor', (e) => h('code', {}, e.actor)], ['Action', (e) => e.action],
      ['Target', (e) => h('code', {}, e.target)], ['Outcome', (e) => statusPill(e.outcome)], ['Address', (e) => e.clientAddress || ''],
    ], entries, 'No entries match.'), cursor ? btn('Load older entries', () => load(true), 'quiet') : null);
  });
  filters.addEventListener('submit', (ev) => { ev.preventDefault(); load(false); });
  put(main, h('h1', {}, 'Audit log'), verify, filters, rows);
  load(false);
}

// ---------- usage, analytics, tier ----------

function meter(label, used, max) {
  return h('div', { class: 'meter' }, h('span', {}, `${label}: ${used} of ${max ?? 'unlimited'}`),
    max ? h('meter', { min: 0, max, value: used, 'aria-label': label }) : null);
}

export function usage(main) {
  const days = select('days', [['7', '7 days'], ['30', '30 days'], ['90', '90 days']], '30');
  const tier = section('Tier', async () => {
    const t = await call('GET', '/api/v1/tiers/status');
    return [facts([['Tier', t.tier], ['Limits enforced', t.enforced ? 'yes' : 'no'], ['Billing period', `${when(t.billingPeriodStart)} – ${when(t.billingPeriodEnd)}`]]),
      meter('Agents', t.usage.agentsRegistered, t.limits.maxAgents),
      meter('Tokens this month', t.usage.tokensThisMonth, t.limits.maxTokensPerMonth),
      meter('Requests this minute', t.usage.requestsThisMinute, t.limits.rateLimitPerMinute)];
  }, { id: 'tier' });
  const trend = section('Tokens per day', async (reload) => {
    days.onchange = reload;
    const t = await call('GET', `/api/v1/analytics/tokens?days=${days.value}`);
    return [field('Period', days), lineChart(t.data, 'Tokens issued per day')];
  }, { id: 'tokens' });
  const heat = section('Activity by weekday and hour', async () => {
    const a = await call('GET', '/api/v1/analytics/agents/activity');
    return heatmap(a.data, 'Tokens and API calls, last 90 days');
  }, { id: 'activity' });
  const perAgent = section('Per agent this month', async () => {
    const a = await call('GET', '/api/v1/analytics/agents');
    return table(`Usage in ${a.month}`, [
      ['Agent', (r) => link(`#/agents/${r.agentId}`, r.agentEmail || r.agentId)], ['Tokens', (r) => r.tokensIssued],
      ['API calls', (r) => r.apiCalls], ['Last active', (r) => when(r.lastActiveAt)],
    ], a.data, 'No usage this month.');
  }, { id: 'per-agent' });
  const today = section('Metered today', async () => {
    const u = await call('GET', '/api/v1/billing/usage');
    return facts([['Date', u.date], ['Tokens issued', u.tokensIssued], ['Agents registered', u.agentsRegistered], ['Credentials generated', u.credentialsGenerated], ['API calls', u.apiCallsTotal]]);
  }, { id: 'billing' });
  put(main, h('h1', {}, 'Usage and analytics'), h('div', { class: 'cards' }, tier, today), trend, heat, perAgent);
}

// ---------- sign-in ----------

export function signInPage(main, params, onSignIn) {
  const msg = h('div', { 'aria-live': 'assertive' });
  const id = h('input', { name: 'clientId', required: true, autocomplete: 'username', spellcheck: 'false' });
  const secret = h('input', { name: 'clientSecret', type: 'password', required: true, autocomplete: 'current-password' });
  const form = h('form', { class: 'signin card', 'aria-label': 'Sign in' },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'With the client id and secret of an organization admin agent, or of the instance admin. The console exchanges them for an access token at this node\'s token endpoint and keeps the token for this tab only.'),
    params.reason ? h('p', { class: 'notice', role: 'status' }, params.reason) : null,
    field('Client id', id), field('Client secret', secret),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Sign in')), msg);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(msg, async () => { await onSignIn(id.value.trim(), secret.value); secret.value = ''; });
  });
  put(main, form);
  id.focus();
}

