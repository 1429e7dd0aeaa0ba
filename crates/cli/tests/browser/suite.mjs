// The pages as a customer and a brand's privacy team use them, in headless Chromium driven by
// Playwright: run by crates/cli/tests/browser.rs against a running `tactful demo`, which passes
// the demo's address, the preference-center link and the console key it printed. Every step
// asserts what a person would notice; screenshots go to TACTFUL_SCREENSHOTS. Exits non-zero on the
// first failure.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run through cargo test)`);
  return value;
};
const BASE = env('TACTFUL_BASE');
const LINK = env('TACTFUL_LINK');
const EMAIL = env('TACTFUL_EMAIL');
const CONSOLE_KEY = env('TACTFUL_CONSOLE_KEY');
const SHOTS = env('TACTFUL_SCREENSHOTS');
const PURPOSE = 'personalize.content';
const origin = new URL(BASE).origin;

const browser = await chromium.launch({
  executablePath: env('TACTFUL_CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
    '--no-first-run', '--disable-component-update', '--disable-sync'],
});

// Every request any page makes, to prove none goes anywhere but the server.
const requested = [];
const problems = [];
async function newContext(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, acceptDownloads: true, ...options });
  context.on('request', (request) => requested.push(request.url()));
  context.on('page', (page) => {
    page.on('pageerror', (error) => problems.push(`script error on ${page.url()}: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !/status of 4\d\d/.test(message.text())) {
        problems.push(`console error on ${page.url()}: ${message.text()}`);
      }
    });
  });
  return context;
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

async function api(path, options = {}) {
  const response = await fetch(`${BASE}${path}`, {
    ...options,
    headers: { authorization: `Bearer ${CONSOLE_KEY}`, 'content-type': 'application/json', ...(options.headers || {}) },
  });
  return { status: response.status, body: await response.json() };
}

async function consentOf(purpose) {
  const { status, body } = await api(`/v1/subjects/email:${encodeURIComponent(EMAIL)}/consents`);
  assert.equal(status, 200, JSON.stringify(body));
  return body.purposes.find((p) => p.purpose === purpose);
}

function step(text) {
  console.log(`- ${text}`);
}

// Every form control a person can reach has a label a screen reader can read.
async function everyControlIsLabelled(page) {
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
    .filter((el) => {
      const text = (el.labels && [...el.labels].map((l) => l.textContent).join('')) || el.getAttribute('aria-label') || el.textContent;
      return !text || !text.trim();
    })
    .map((el) => el.outerHTML));
  assert.deepEqual(unlabelled, [], 'every control has a label');
}

// axe-core's rules (WCAG 2 A and AA, and best practices) on a desktop and a phone: no violation of
// any impact, and no page that scrolls sideways on the phone.
const AXE = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const checkedPages = [];
async function accessible(page, name) {
  const original = page.viewportSize();
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.evaluate(AXE);
    const violations = await page.evaluate(async () => {
      const results = await window.axe.run(document, { resultTypes: ['violations'] });
      return results.violations.map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
    });
    assert.deepEqual(violations, [], `${name} at ${width} px: axe-core found violations`);
    const sideways = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(sideways <= 0, `${name} scrolls sideways by ${sideways} px at ${width} px`);
  }
  await page.setViewportSize(original);
  checkedPages.push(name);
}

const customer = await newContext();
const page = await customer.newPage();

step('the signed link opens the person\'s own settings, and the token leaves the address bar');
await page.goto(LINK);
assert.equal(new URL(page.url()).pathname, '/me');
assert.equal(new URL(page.url()).search, '');
await page.getByRole('heading', { level: 1, name: 'Your privacy settings' }).waitFor();
assert.ok((await page.textContent('#known')).includes(EMAIL), 'what we know shows their own email');
const cookies = await customer.cookies();
const session = cookies.find((c) => c.name === 'tactful_me');
assert.ok(session && session.httpOnly && session.sameSite === 'Lax', JSON.stringify(cookies));
await everyControlIsLabelled(page);
await accessible(page, '/me');
await shot(page, 'preference-center');

step('switching a purpose off reaches the consent ledger, with a signed receipt shown');
const recommendations = page.locator(`li[data-purpose="${PURPOSE}"]`);
await recommendations.getByRole('button', { name: 'No: Product recommendations' }).click();
await page.locator('.receipt').first().waitFor();
assert.match(await page.textContent('.receipts'), /You said no/);
assert.equal(await recommendations.getAttribute('data-state'), 'off');
let consent = await consentOf(PURPOSE);
assert.equal(consent.status, 'withdrawn');
assert.equal(consent.method, 'preference_center');
assert.ok((await page.textContent('.receipts')).includes(consent.receipt), 'the receipt shown is the ledger\'s');
await shot(page, 'preference-center-receipt');

step('declaring an interest (after switching recommendations back on) leads with reason you_told_us');
await recommendations.getByRole('button', { name: 'Yes: Product recommendations' }).click();
await page.locator('.receipt').first().waitFor();
consent = await consentOf(PURPOSE);
assert.equal(consent.status, 'given');
const topic = page.locator('#interests input[name=interest]:not(:checked)').first();
const interest = await topic.getAttribute('value');
await topic.check();
await page.getByRole('button', { name: 'Save my interests' }).click();
await page.locator('#done').waitFor();
const toldUs = page.locator('#why li[data-reason="you_told_us"]');
assert.ok(await toldUs.count() > 0, 'a recommendation because of what they told us');
assert.match(await toldUs.first().textContent(), new RegExp(`You told us you like ${interest}`));
await page.locator('#why').scrollIntoViewIfNeeded();
await shot(page, 'why-am-i-seeing-this');

step('the access log lists who used the data, and why');
const accessRows = await page.locator('#access tbody tr').count();
assert.ok(accessRows > 0);
assert.ok((await page.textContent('#access')).includes('Opened these settings'));

step('download my data: the request runs and the package downloads');
await page.getByRole('button', { name: 'Prepare my download' }).click();
await page.getByText('Ready to download.').waitFor({ timeout: 60_000 });
const exportUrl = new URL(page.url()).pathname;
await shot(page, 'download-ready');
const [download] = await Promise.all([
  page.waitForEvent('download'),
  page.getByRole('link', { name: 'Download (JSON, for other services)' }).click(),
]);
const file = await download.path();
const pkg = JSON.parse(await readFile(file, 'utf8'));
assert.equal(pkg.format, 'tactful-export/1');
assert.ok(JSON.stringify(pkg.identifiers).includes(EMAIL));

step('the same actions work without JavaScript');
const plain = await newContext({ javaScriptEnabled: false });
const plainPage = await plain.newPage();
await plainPage.goto(`${BASE}/me`);
assert.equal(new URL(plainPage.url()).pathname, '/me', 'no session in a new browser: an error page');
await plainPage.context().addCookies([{ ...session }]);
await plainPage.goto(`${BASE}/me`);
const plainSwitch = plainPage.locator(`li[data-purpose="${PURPOSE}"]`);
await plainSwitch.getByRole('button', { name: 'No: Product recommendations' }).click();
await plainPage.locator('.receipt').first().waitFor();
assert.equal((await consentOf(PURPOSE)).status, 'withdrawn');
await plainSwitch.getByRole('button', { name: 'Yes: Product recommendations' }).click();
await plainPage.locator('.receipts', { hasText: 'You said yes' }).waitFor();
assert.equal((await consentOf(PURPOSE)).status, 'given');
await plain.close();

step('a tampered link and a post without the CSRF token are refused, saying what to do');
const stranger = await newContext();
const strangerPage = await stranger.newPage();
const tampered = LINK.replace(/t=(.)/, (_, c) => `t=${c === 'A' ? 'B' : 'A'}`);
const refused = await strangerPage.goto(tampered);
assert.equal(refused.status(), 401);
await strangerPage.getByText('this link is not valid', { exact: false }).waitFor();
await accessible(strangerPage, 'an error page');
await shot(strangerPage, 'invalid-link');
await strangerPage.goto(`${BASE}/me/sign-in`);
await accessible(strangerPage, '/me/sign-in');
const forged = await page.request.post(`${BASE}/me/consents`, { form: { purpose: PURPOSE, choice: 'off' } });
assert.equal(forged.status(), 403);
assert.equal((await consentOf(PURPOSE)).status, 'given', 'nothing changed');
await stranger.close();

step('delete my data: a clear statement, a confirmation, and the erasure runs to the end');
await page.goto(`${BASE}/me#delete`);
assert.match(await page.textContent('#delete'), /start fresh/);
await page.getByRole('button', { name: 'Delete my data' }).click();
assert.equal(new URL(page.url()).pathname, '/me', 'the confirmation box is required');
await page.getByLabel('I understand that my data will be deleted').check();
await page.getByRole('button', { name: 'Delete my data' }).click();
await page.getByText('Done: your data is deleted everywhere.').waitFor({ timeout: 60_000 });
const erasureUrl = new URL(page.url()).pathname;
await shot(page, 'deletion-complete');
const gone = await api(`/v1/subjects/email:${encodeURIComponent(EMAIL)}/consents`);
assert.equal(gone.status, 404, 'nothing leads to the person any more');

step('the console: sign in with an API key and see the request');
const team = await newContext();
const consolePage = await team.newPage();
await consolePage.goto(`${BASE}/console`);
await accessible(consolePage, 'the console\'s sign-in');
await consolePage.getByLabel('API key').fill(CONSOLE_KEY);
await consolePage.getByRole('button', { name: /sign in/i }).click();
await consolePage.getByRole('heading', { level: 1 }).waitFor();
const erasureId = erasureUrl.split('/').pop();
const exportId = exportUrl.split('/').pop();
const consoleText = await consolePage.textContent('main');
assert.ok(consoleText.includes(erasureId), `the console lists the erasure ${erasureId}`);
assert.ok(consoleText.includes(exportId), `the console lists the download ${exportId}`);
const erasureRow = consolePage.locator(`tr[data-request="${erasureId}"]`);
assert.equal(await erasureRow.first().getAttribute('data-status'), 'completed');
await consolePage.locator('#audit-state[data-audit=intact]').waitFor();
await everyControlIsLabelled(consolePage);
await accessible(consolePage, '/console');
await shot(consolePage, 'console');
await consolePage.getByRole('button', { name: 'Measure quality now' }).click();
await consolePage.locator('#quality tr[data-model="item-to-item"]').waitFor();
await accessible(consolePage, 'the console\'s quality check');
await shot(consolePage, 'console-quality');
await consolePage.goto(`${BASE}/console`);
await consolePage.locator(`a[href="/console/requests/${erasureId}"]`).first().click();
await consolePage.getByText(erasureId).first().waitFor();
await accessible(consolePage, 'a request in the console');
await shot(consolePage, 'console-request');

step('the privacy notice, generated from the catalog');
await consolePage.goto(`${BASE}/privacy`);
await consolePage.getByRole('heading', { level: 1, name: 'Privacy notice' }).waitFor();
await accessible(consolePage, '/privacy');
await shot(consolePage, 'privacy-notice');
await consolePage.goto(`${BASE}/`);
await accessible(consolePage, 'the front page');

step('no page asked any other host for anything');
const elsewhere = requested.filter((url) => !url.startsWith(origin) && !url.startsWith('data:'));
assert.deepEqual(elsewhere, []);
assert.ok(requested.some((url) => url.endsWith('/assets/tactful.css')), 'the check saw the pages\' own requests');
assert.deepEqual(problems, []);

await browser.close();
console.log(`all browser checks passed (${requested.length} requests, all to ${origin}; axe-core clean at 1280 and 390 px on ${checkedPages.length} pages)`);
