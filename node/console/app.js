// The console's shell: hash routes (no token or secret ever goes into a URL), the navigation
// scoped to what the signed-in token may do, and sign-in / sign-out.

import { h, put } from './dom.js';
import { current, hasScope, onSession, signIn, signOut } from './api.js';
import * as pages from './pages.js';

// [hash prefix, label, scope needed, page]
const SECTIONS = [
  ['agents', 'Agents', 'agents:read', pages.agents],
  ['usage', 'Usage', 'agents:read', pages.usage],
  ['audit', 'Audit log', 'audit:read', pages.audit],
  ['webhooks', 'Webhooks', 'webhooks:read', pages.webhooks],
  ['policies', 'Trust policies', 'agents:read', pages.policies],
  ['orgs', 'Organizations', 'admin:orgs', pages.orgs],
  ['federation', 'Federation', 'admin:orgs', pages.federation],
];
const DETAILS = { agents: pages.agentDetail, orgs: pages.orgDetail, webhooks: pages.webhookDetail };

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
let signOutReason = '';

function allowed() { return SECTIONS.filter(([, , scope]) => hasScope(scope)); }

function renderChrome(active) {
  const s = current();
  put(nav, s ? h('ul', {}, allowed().map(([key, label]) => h('li', {},
    h('a', { href: `#/${key}`, 'aria-current': key === active ? 'page' : false }, label)))) : null);
  put(who, s ? [h('span', { class: 'me', title: s.clientId }, s.name || s.clientId),
    h('button', { type: 'button', class: 'btn btn-quiet', id: 'signout', onclick: () => signOut() }, 'Sign out')] : null);
}

function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  const [key, id] = path.split('/');
  const s = current();
  if (!s) {
    renderChrome(null);
    document.title = 'Sign in — agentidp console';
    pages.signInPage(main, { reason: signOutReason }, async (clientId, secret) => {
      await signIn(clientId, secret);
    });
    return;
  }
  const sections = allowed();
  const found = sections.find(([k]) => k === key);
  if (!found) {
    if (!sections.length) {
      renderChrome(null);
      put(main, h('h1', {}, 'Nothing to show'), h('p', {}, 'This token holds none of the scopes the console uses (agents:read, audit:read, webhooks:read, admin:orgs).'));
      return;
    }
    location.replace(`#/${sections[0][0]}`);
    return;
  }
  renderChrome(key);
  const page = id && DETAILS[key] ? DETAILS[key] : found[3];
  document.title = `${found[1]} — agentidp console`;
  page(main, { id: id && decodeURIComponent(id), query });
  main.focus({ preventScroll: true });
}

onSession((session, reason) => {
  signOutReason = session ? '' : (reason && reason !== 'signout' ? reason : '');
  if (session) {
    if (!location.hash || location.hash === '#/signin') location.hash = '#/agents';
    else route();
  } else {
    location.hash = '#/signin';
    route();
  }
});

window.addEventListener('hashchange', route);
route();
