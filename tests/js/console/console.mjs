// Drives the console in Debian's Chromium (playwright-core, no browser download) through the
// scenarios of tests/tests/e2e/console.rs, against a node that test started and seeded.
// Input: environment (CONSOLE_BASE, ORG_ID/ORG_SECRET, ADMIN_ID/ADMIN_SECRET, XSS_AGENT,
// SHOTS = screenshot folder). Output: one JSON object on stdout with what the browser saw; the
// Rust test checks it against the API. Any failed expectation here exits non-zero with why.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const base = env('CONSOLE_BASE');
const shots = env('SHOTS');
fs.mkdirSync(shots, { recursive: true });
const out = { screenshots: [], dialogs: [], cspViolations: [], consoleErrors: [], pageErrors: [] };
const expect = (cond, what) => { if (!cond) throw new Error(`expectation failed: ${what}`); };

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentidp-console-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--no-first-run', '--disable-quic', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
  acceptDownloads: true,
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(10000);
// CSP violations, from every document the page loads (the binding outlives navigations).
await page.exposeFunction('__reportCsp', (v) => out.cspViolations.push(v));
await page.addInitScript(() => {
  document.addEventListener('securitypolicyviolation', (e) => window.__reportCsp(`${e.violatedDirective} ${e.blockedURI}`));
});
// The page's clock, so that the test can move it past the token's expiry.
await context.clock.install();
page.on('dialog', async (d) => {
  out.dialogs.push({ type: d.type(), message: d.message() });
  if (d.type() === 'confirm') await d.accept(); else await d.dismiss();
});
page.on('console', (m) => { if (m.type() === 'error') out.consoleErrors.push(m.text()); });
page.on('pageerror', (e) => out.pageErrors.push(String(e)));

async function shot(name, what) {
  await page.waitForTimeout(150);
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  out.screenshots.push({ file, what });
}
const main = page.locator('main');
const idle = () => page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));

async function signInWithKeyboard(id, secret) {
  await page.locator('#main input[name="clientId"]').waitFor();
  // Keyboard only: the id field has focus on arrival; Tab to the secret; Enter submits.
  await page.keyboard.type(id);
  await page.keyboard.press('Tab');
  await page.keyboard.type(secret);
  await page.keyboard.press('Enter');
}

try {
  // --- the page and its headers
  const resp = await page.goto(`${base}/console`);
  const headers = resp.headers();
  out.headers = {
    csp: headers['content-security-policy'], xfo: headers['x-frame-options'], nosniff: headers['x-content-type-options'],
    referrer: headers['referrer-policy'], etag: headers.etag, cacheControl: headers['cache-control'],
  };
  await shot('01-sign-in', 'Sign-in form (client id and secret, exchanged at the node\'s token endpoint)');

  // --- a wrong secret: the OAuth error shown with its code
  await signInWithKeyboard(env('ORG_ID'), 'not-the-secret');
  const err = page.locator('.error');
  await err.waitFor();
  out.wrongSecretError = (await err.textContent()).trim();
  await page.fill('input[name="clientSecret"]', '');
  await page.fill('input[name="clientId"]', '');
  await page.locator('input[name="clientId"]').focus();

  // --- sign in (keyboard)
  await signInWithKeyboard(env('ORG_ID'), env('ORG_SECRET'));
  await page.waitForURL(/#\/agents/);
  await page.locator('table').first().waitFor();
  out.nav = await page.locator('#nav a').allTextContents();
  const stored = await page.evaluate(() => sessionStorage.getItem('agentidp.console.session'));
  expect(stored && !stored.includes(env_secret()), 'the secret is not stored');
  out.token = JSON.parse(stored).token;
  out.urlHasToken = page.url().includes(out.token);

  // --- the XSS agent's name renders as text, runs nothing, makes no <img>
  const xss = env('XSS_AGENT');
  const xssLink = main.locator('a', { hasText: '<img src=x onerror=alert(1)>' });
  await xssLink.waitFor();
  out.xssListText = await xssLink.textContent();
  out.imgInMain = await main.locator('img').count();
  await shot('02-agents', 'Agents list with filters and search; the agent named <img src=x onerror=alert(1)> appears as text');
  await xssLink.click();
  await page.waitForURL(new RegExp(`#/agents/${xss}`));
  await page.locator('h1.agent-name').waitFor();
  out.xssDetailHeading = await page.locator('h1.agent-name').evaluate((e) => e.firstChild.textContent);
  out.imgInMainDetail = await main.locator('img').count();
  // Its card (it has an endpoint and a skill): the signature checked in the browser.
  const sig = page.locator('[data-section="card"] [data-signature]');
  await sig.waitFor();
  out.cardSignature = await sig.getAttribute('data-signature');
  out.cardText = await page.locator('[data-section="card"] pre').textContent();
  await idle();
  out.imgInMainDetail += await main.locator('img').count();
  out.delegationsReceived = await page.locator('[data-section="delegations"] table[data-direction="received"] tbody tr td:first-child')
    .allTextContents();
  await shot('03-agent-card', 'The agent named <img src=x onerror=alert(1)>: its name as text, its A2A card with the signature verified in the browser, OASF record, badge verified by the node, the delegation it received');

  // --- search filters the list client-side
  await page.goto(`${base}/console#/agents`);
  await page.locator('table').first().waitFor();
  await page.fill('input[name="search"]', 'onerror');
  out.searchRows = await main.locator('tbody tr').count();
  await page.fill('input[name="search"]', '');

  // --- register an agent through the form; its DID document shows
  await page.locator('summary', { hasText: 'Register an agent' }).click();
  await page.fill('input[name="email"]', 'console-made@example.com');
  await page.fill('input[name="name"]', 'Console Made');
  await page.fill('input[name="endpoints"]', 'https://console-made.example/a2a');
  await page.locator('button', { hasText: 'Register' }).click();
  await page.waitForURL(/#\/agents\/[0-9a-f-]{36}$/);
  out.registeredId = page.url().split('/').pop();
  await page.locator('[data-section="did"] pre').waitFor();
  out.didDocument = JSON.parse(await page.locator('[data-section="did"] pre').textContent());
  await idle();

  // --- generate a credential: the secret shows once
  await page.locator('button', { hasText: 'Generate credential' }).click();
  const secretEl = page.locator('[data-secret="Client secret"]');
  await secretEl.waitFor();
  out.generatedSecret = (await secretEl.textContent()).trim();
  out.generatedClientId = (await page.locator('[data-secret="Client id"]').textContent()).trim();
  const tokenResp = await fetch(`${base}/api/v1/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: out.generatedClientId, client_secret: out.generatedSecret }),
  });
  out.generatedSecretWorks = tokenResp.status === 200;
  await idle();
  out.credentialRows = await page.locator('[data-section="credentials"] tbody tr').count();
  await shot('04-agent-detail', 'An agent registered in the console: its facts and DID document, the private key generated at registration and the new client secret each shown once, the card/OASF/badge sections showing the API errors (code and message) of an agent without skills, credentials with rotate/revoke, keys, delegations, starter-project buttons');
  out.generatedKeyShown = await page.locator('.secret[aria-label="Private key generated at registration"]').count();
  await page.locator('[data-section="credentials"] .secret button', { hasText: 'Done' }).click();
  await page.reload();
  await page.locator('[data-section="credentials"] tbody tr').first().waitFor();
  await idle();
  out.secretStillShown = (await page.content()).includes(out.generatedSecret);
  out.secretBoxesAfterReload = await page.locator('.secret').count();
  out.secretInStorage = (await page.evaluate(() => JSON.stringify(sessionStorage))).includes(out.generatedSecret);

  // --- the starter-project download (or the API error the page shows)
  const scaffoldError = page.locator('[data-section="scaffold"] .error');
  const [outcome] = await Promise.all([
    Promise.race([
      page.waitForEvent('download').then(async (d) => ({
        downloaded: d.suggestedFilename(),
        magic: fs.readFileSync(await d.path()).subarray(0, 4).toString('hex'),
      })),
      scaffoldError.waitFor().then(async () => ({ error: (await scaffoldError.textContent()).trim() })),
    ]),
    page.locator('button[data-language="typescript"]').click(),
  ]);
  out.scaffold = outcome;

  // --- the audit chain
  await page.goto(`${base}/console#/audit`);
  await page.locator('main table').waitFor();
  await page.locator('button', { hasText: 'Verify the chain' }).click();
  const verdict = page.locator('.verdict');
  await verdict.waitFor();
  out.auditValid = await verdict.getAttribute('data-valid');
  out.auditVerdict = (await verdict.textContent()).trim();
  await page.fill('input[name="action"]', 'agent.register');
  await Promise.all([
    page.waitForResponse((r) => r.url().includes('/api/v1/audit?') && r.url().includes('action=agent.register')),
    page.locator('form.filters button[type="submit"]').click(),
  ]);
  await page.waitForTimeout(100);
  out.auditFilteredActions = [...new Set(await main.locator('tbody tr td:nth-child(4)').allTextContents())];
  await shot('05-audit', 'Audit log filtered by action, with the chain verified intact');

  // --- webhooks, trust policies (pages render from the API)
  await page.goto(`${base}/console#/webhooks`);
  await main.locator('[data-section="Subscriptions"] .section-body:not([aria-busy])').waitFor();
  await shot('06-webhooks', 'Webhooks: subscriptions (and the form to add one)');

  // --- usage: the chart's numbers
  await page.goto(`${base}/console#/usage`);
  await page.locator('svg.line-chart').waitFor();
  await page.locator('svg.heatmap').waitFor();
  await idle();
  out.chart = await page.locator('svg.line-chart circle.dot').evaluateAll((els) => els.map((e) => ({ date: e.getAttribute('data-date'), count: Number(e.getAttribute('data-count')) })));
  out.heatTotal = Number(await page.locator('svg.heatmap').getAttribute('data-total'));
  await shot('07-usage', 'Usage: tier status, metered today, tokens per day (line), weekday × hour heatmap, per-agent table');
  await page.setViewportSize({ width: 390, height: 800 });
  await shot('08-usage-narrow', 'The usage page in a narrow (390 px) window');
  await page.setViewportSize({ width: 1280, height: 800 });

  // --- sign out clears the token
  await page.locator('#signout').click();
  await page.locator('#main input[name="clientId"]').waitFor();
  out.afterSignOut = {
    storage: await page.evaluate(() => sessionStorage.getItem('agentidp.console.session')),
    url: page.url(),
    nav: await page.locator('#nav a').count(),
  };
  await page.reload();
  await page.locator('#main input[name="clientId"]').waitFor();
  out.afterReloadSignedOut = (await page.locator('#signout').count()) === 0;

  // --- the instance admin: organizations and federation
  await signInWithKeyboard(env('ADMIN_ID'), env('ADMIN_SECRET'));
  await page.locator('#signout').waitFor();
  out.adminNav = await page.locator('#nav a').allTextContents();
  await page.goto(`${base}/console#/orgs`);
  await page.locator('main table').waitFor();
  out.orgRows = await main.locator('tbody tr').count();
  await shot('09-organizations', 'Organizations (instance admin)');
  await page.goto(`${base}/console#/federation`);
  await page.locator('[data-section="Gossip of trust anchors"] dl').waitFor();
  await idle();
  await shot('10-federation', 'Federation partners and the gossip view (instance admin)');

  // --- the token expires: the console forgets it and asks to sign in again
  await page.clock.fastForward('01:01:00');
  await page.locator('#main input[name="clientId"]').waitFor();
  out.afterExpiry = {
    notice: await page.locator('#main .notice').textContent(),
    storage: await page.evaluate(() => sessionStorage.getItem('agentidp.console.session')),
  };

} catch (e) {
  try { await shot('failure', 'The page when the script failed'); } catch { /* ignore */ }
  console.error(String(e && e.stack || e));
  console.log(JSON.stringify(out));
  await context.close();
  process.exit(1);
}
await context.close();
fs.rmSync(userDataDir, { recursive: true, force: true });
console.log(JSON.stringify(out));

function env_secret() { return process.env.ORG_SECRET; }
