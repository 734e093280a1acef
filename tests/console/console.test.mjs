// The console's browser test, run by tests/console.rs against a real server: Debian's
// Chromium driven by playwright-core, axe-core on every page, screenshots at 1280 and 375 px.
//
//   REGISTRAR_URL=http://127.0.0.1:PORT REGISTRAR_OPERATOR_KEY=… SCREENSHOTS=dir node console.test.mjs
//
// Exits 0 when every step passed; otherwise prints the failed step and exits 1.

import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const BASE = process.env.REGISTRAR_URL;
const OPERATOR = process.env.REGISTRAR_OPERATOR_KEY;
const SHOTS = process.env.SCREENSHOTS ?? 'console-screenshots';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
assert.ok(BASE && OPERATOR, 'REGISTRAR_URL and REGISTRAR_OPERATOR_KEY are required');
mkdirSync(SHOTS, { recursive: true });
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const TENANT = `console${Date.now().toString(36)}`;

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const problems = [];
const audited = [];

/// A new tab of its own context (its own sessionStorage), failing on any script error or
/// console error (a CSP violation shows as one).
async function tab(width = 1280) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The browser logs every 4xx fetch; those this test provokes (the edit conflict's 409, the
    // broken template's 400, the revoked key's 401) are not problems. A CSP violation or a
    // script error is.
    if (m.type() === 'error' && !/Failed to load resource: .* status of (409|400|401)/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  return page;
}

/// axe-core on the page as it is now: no serious or critical violation. (Evaluated over the
/// DevTools protocol, which the page's CSP does not apply to.)
async function audit(page, name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  audited.push(name);
  assert.deepEqual(bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`), [],
    `axe on ${name}`);
}

async function shoot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}-${page.viewportSize().width}.png`, fullPage: true });
}

async function visit(page, hash, heading, name) {
  await page.goto(`${BASE}/console${hash}`);
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  await audit(page, name);
}

async function signIn(page, key) {
  await page.goto(`${BASE}/console`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await audit(page, 'sign-in');
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

const idFromHash = (page) => decodeURIComponent(new URL(page.url()).hash.split('/').pop());

async function step(name, body) {
  try {
    await body();
    console.log(`ok   ${name}`);
  } catch (error) {
    console.log(`FAIL ${name}\n${error.stack ?? error}`);
    throw error;
  }
}

try {
  const page = await tab();

  await step('the console is served with a strict CSP, no framing and no secret', async () => {
    const response = await page.request.get(`${BASE}/console`);
    assert.equal(response.status(), 200);
    const csp = response.headers()['content-security-policy'];
    assert.ok(csp && csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), csp);
    assert.equal(response.headers()['x-frame-options'], 'DENY');
    assert.ok(!(await response.text()).includes(OPERATOR));
  });

  await step('the operator signs in, makes a tenant and a read key', async () => {
    await signIn(page, OPERATOR);
    await page.getByRole('heading', { level: 1, name: 'Tenants' }).waitFor();
    await audit(page, 'tenants');
    await page.getByLabel('Tenant id').fill(TENANT);
    await page.getByRole('button', { name: 'Create tenant' }).click();
    await page.getByRole('rowheader', { name: TENANT }).waitFor();
    await page.getByLabel('Tenant', { exact: true }).selectOption(TENANT);
    await page.getByRole('heading', { level: 1, name: 'Registrations' }).waitFor();
    await audit(page, 'registrations (empty)');
    const html = await page.content();
    assert.ok(!html.includes(OPERATOR), 'the key is not in the page');
    assert.ok(!page.url().includes(OPERATOR), 'the key is not in the URL');
  });

  let readKey;
  await step('keys: a read key is made and its secret shown once', async () => {
    await visit(page, '#/keys', `Keys of ${TENANT}`, 'keys');
    await page.getByLabel('Role').selectOption('read');
    await page.getByLabel('Name').fill('auditor');
    await page.getByRole('button', { name: 'Create key' }).click();
    readKey = (await page.locator('.secret').textContent()).trim();
    assert.ok(readKey.length > 10, readKey);
    await shoot(page, 'keys');
  });

  let course, offering, contact, registration;
  await step('a course, an offering (2 seats) and a contact are made', async () => {
    await visit(page, '#/catalog/courses/new', 'New course', 'new course');
    await page.getByLabel('name', { exact: true }).fill('Working at height');
    await page.getByLabel('code', { exact: true }).fill('WAH-1');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { level: 1, name: /Course: Working at height/ }).waitFor();
    course = idFromHash(page);

    await visit(page, '#/catalog/courseOfferings/new', 'New course offering', 'new offering');
    await page.getByLabel('course id', { exact: true }).fill(course);
    await page.getByLabel('name', { exact: true }).fill('December group');
    await page.getByLabel('capacity', { exact: true }).fill('2');
    await page.getByLabel('price', { exact: true }).fill('250');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { level: 1, name: /December group/ }).waitFor();
    offering = idFromHash(page);
    await page.getByText('0 of 2 seats taken').waitFor();

    await visit(page, '#/catalog/contacts/new', 'New contact', 'new contact');
    await page.getByLabel('first name', { exact: true }).fill('Ada');
    await page.getByLabel('last name', { exact: true }).fill('Lovelace');
    await page.getByLabel('email address', { exact: true }).fill('ada@example.org');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { level: 1, name: /Contact/ }).waitFor();
    contact = idFromHash(page);
  });

  await step('the contact is registered, and found by search', async () => {
    await visit(page, '#/registrations/new', 'New registration', 'new registration');
    await page.getByLabel('student id', { exact: true }).fill(contact);
    await page.getByLabel('course id', { exact: true }).fill(course);
    await page.getByLabel('course offering id', { exact: true }).fill(offering);
    await page.getByLabel('status', { exact: true }).selectOption('registered');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { level: 1, name: /Registration/ }).waitFor();
    registration = idFromHash(page);
    await audit(page, 'registration');
    await shoot(page, 'registration');

    await visit(page, '#/registrations', 'Registrations', 'registrations');
    const search = page.getByRole('form', { name: 'Search registrations' });
    await search.getByLabel('name contains').fill('lovelace');
    await search.getByLabel('status', { exact: true }).selectOption(['registered']);
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByText('Search results: 1 on this page').waitFor();
    await page.getByRole('link', { name: registration }).waitFor();
    await shoot(page, 'registrations');
    await page.getByRole('link', { name: registration }).click();
    await page.getByRole('heading', { level: 1, name: /^Registration( \d+)?$/ }).waitFor();

    await visit(page, `#/catalog/courseOfferings/${offering}`, /December group/, 'offering');
    await page.getByText('1 of 2 seats taken').waitFor();

    // The list draws each offering's fill bar from the offering itself: no lookup per row.
    const lookups = [];
    const watch = (request) => { if (request.url().includes('/courseOffering/')) lookups.push(request.url()); };
    page.on('request', watch);
    await visit(page, '#/catalog/courseOfferings', 'Course offerings', 'offerings');
    await page.getByText('1 of 2 seats taken').waitFor();
    page.off('request', watch);
    assert.deepEqual(lookups, [], 'no registration lookup per offering');
  });

  await step('generateOrder makes the order, a payment is recorded on it, previewEmail renders', async () => {
    await visit(page, `#/registrations/${registration}`, /^Registration/, 'registration before its order');
    await page.getByRole('button', { name: 'Generate order' }).click();
    await page.getByText(/Order .* was made/).waitFor();
    const orderLink = page.locator('dt:text-is("order id") + dd a');
    const order = (await orderLink.textContent()).trim();
    await orderLink.click();
    await page.getByRole('heading', { level: 1, name: /Order/ }).waitFor();
    await visit(page, `#/catalog/orders/${order}`, /Order/, 'order');
    await page.getByText('Total 250 · paid 0 · due 250').waitFor();
    await page.getByLabel('Amount received').fill('100');
    await page.getByRole('button', { name: 'Record payment' }).click();
    await page.getByText('Total 250 · paid 100 · due 150').waitFor();
    await shoot(page, 'order');

    await visit(page, `#/registrations/${registration}`, /^Registration/, 'registration with its order');
    await page.getByRole('button', { name: 'Preview email' }).click();
    await page.getByLabel('Send to').fill('ada@example.org');
    await page.getByLabel('Subject').fill('Welcome, {{ contact.first_name }}');
    await page.getByLabel('Text (minijinja)').fill('See you on {{ offering.name }}.');
    await page.getByRole('button', { name: 'Render and send' }).click();
    await page.getByText('Subject: Welcome, Ada').waitFor();
    await page.getByText('See you on December group.').waitFor();
    await audit(page, 'email preview');
  });

  await step('a template is edited with a live preview', async () => {
    await visit(page, '#/catalog/emailTemplates', 'Email templates', 'templates');
    await page.getByRole('table').getByRole('link').first().click();
    await page.getByRole('button', { name: 'Edit' }).click();
    await page.getByRole('heading', { level: 2, name: 'Live preview' }).waitFor();
    await page.getByLabel('Registration in scope').fill(registration);
    await page.getByLabel('subject', { exact: true }).fill('Hello {{ contact.first_name }}, see you at {{ offering.name }}');
    await page.getByText('Subject: Hello Ada, see you at December group').waitFor();
    await page.getByLabel('subject', { exact: true }).fill('Broken {{ oops');
    await page.getByRole('alert').filter({ hasText: 'subject' }).waitFor();
    await audit(page, 'template editor');
    await shoot(page, 'template');
  });

  await step('an edit that races a second tab shows the conflict and offers a reload', async () => {
    await visit(page, `#/registrations/${registration}/edit`, /Edit registration/, 'edit registration');
    const other = await tab();
    await signIn(other, OPERATOR);
    await other.getByRole('heading', { level: 1 }).waitFor();
    await other.getByLabel('Tenant', { exact: true }).selectOption(TENANT);
    await other.goto(`${BASE}/console#/registrations/${registration}/edit`);
    await other.getByRole('heading', { level: 1, name: /Edit registration/ }).waitFor();
    await other.getByLabel('job title', { exact: true }).fill('Engineer');
    await other.getByRole('button', { name: 'Save' }).click();
    await other.getByRole('heading', { level: 1, name: /^Registration/ }).waitFor();
    await other.context().close();

    await page.getByLabel('job title', { exact: true }).fill('Analyst');
    await page.getByRole('button', { name: 'Save' }).click();
    const alert = page.getByRole('alert').filter({ hasText: 'Someone else changed this registration' });
    await alert.waitFor();
    assert.ok((await alert.textContent()).includes('Engineer'), 'the other version is shown');
    await audit(page, 'edit conflict');
    await shoot(page, 'conflict');
    const now = (await alert.textContent()).match(/now version (\d+)/)[1];
    await page.getByRole('button', { name: 'Reload the other version' }).click();
    await page.getByText(`Editing version ${now}`).waitFor();
    assert.equal(await page.getByLabel('job title', { exact: true }).inputValue(), 'Engineer');
  });

  await step('the history lists each change, newest first', async () => {
    await visit(page, `#/registrations/${registration}`, /^Registration/, 'registration with history');
    const history = page.getByRole('region', { name: 'History' });
    await history.waitFor();
    const ops = await history.locator('tbody tr td:nth-child(2)').allTextContents();
    assert.equal(ops.at(-1), 'created', `the oldest change is the create: ${ops}`);
    assert.ok(ops.length >= 3 && ops.slice(0, -1).every((op) => op === 'updated'), `${ops}`);
    assert.ok((await history.textContent()).includes('Engineer'), 'the other tab\'s change is in a patch');
  });

  await step('cancelling gives the seat back: the fill bar goes down', async () => {
    await visit(page, `#/registrations/${registration}`, /^Registration/, 'registration again');
    await page.getByRole('button', { name: 'Cancel registration' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel registration' }).click();
    await page.getByText('The registration is cancelled.').waitFor();
    await visit(page, `#/catalog/courseOfferings/${offering}`, /December group/, 'offering after cancel');
    await page.getByText('0 of 2 seats taken').waitFor();
    await shoot(page, 'offering');
  });

  await step('a read key is offered no write action', async () => {
    const reader = await tab();
    await signIn(reader, readKey);
    await reader.getByRole('heading', { level: 1, name: 'Registrations' }).waitFor();
    const writes = /^(New|Edit|Delete|Save|Create|Cancel registration|Generate order|Preview email|Revoke|Record payment)/;
    for (const [hash, heading] of [
      ['#/registrations', 'Registrations'],
      [`#/registrations/${registration}`, /^Registration/],
      ['#/catalog/courses', 'Courses'],
      [`#/catalog/courseOfferings/${offering}`, /December group/],
      [`#/catalog/contacts/${contact}`, /Contact/],
    ]) {
      await visit(reader, hash, heading, `read key ${hash}`);
      const offered = [...await reader.getByRole('button').allTextContents(), ...await reader.getByRole('link').allTextContents()]
        .map((t) => t.trim()).filter((t) => writes.test(t));
      assert.deepEqual(offered, [], `write actions offered to a read key on ${hash}`);
    }
    assert.equal(await reader.getByRole('link', { name: 'Keys' }).count(), 0);
    assert.equal(await reader.getByRole('link', { name: 'Tenants' }).count(), 0);
    await reader.context().close();
  });

  await step('the read key is revoked, and then refused', async () => {
    await visit(page, '#/keys', `Keys of ${TENANT}`, 'keys again');
    await page.getByRole('row', { name: /auditor/ }).getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
    await page.getByText(/Key .* was revoked/).waitFor();
    // The notice comes before the list is read again: wait for the row to go.
    await page.getByRole('row', { name: /auditor/ }).waitFor({ state: 'detached' });
    const refused = await tab();
    await signIn(refused, readKey);
    await refused.getByRole('alert').filter({ hasText: 'The key was not accepted.' }).waitFor();
    await refused.context().close();
  });

  await step('narrow screens: the pages fit 375 px', async () => {
    const narrow = await tab(375);
    await signIn(narrow, OPERATOR);
    await narrow.getByRole('heading', { level: 1 }).waitFor();
    await narrow.getByLabel('Tenant', { exact: true }).selectOption(TENANT);
    for (const [hash, heading, name] of [
      ['#/registrations', 'Registrations', 'registrations'],
      [`#/registrations/${registration}`, /^Registration/, 'registration'],
      [`#/catalog/courseOfferings/${offering}`, /December group/, 'offering'],
    ]) {
      await visit(narrow, hash, heading, `${name} at 375 px`);
      const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `${name}: the page is ${overflow} px wider than the screen`);
      await shoot(narrow, name);
    }
    await narrow.context().close();
  });

  await step('every other page passes axe-core', async () => {
    for (const [hash, heading] of [
      ['#/catalog/courses', 'Courses'],
      ['#/catalog/courseOfferings', 'Course offerings'],
      ['#/catalog/contacts', 'Contacts'],
      ['#/catalog/registrationProcesses', 'Registration processes'],
      ['#/catalog/emailTemplates', 'Email templates'],
      ['#/catalog/orders', 'Orders'],
      [`#/catalog/courses/${course}`, /Course: Working at height/],
      [`#/catalog/courseOfferings/${offering}/edit`, /Edit CourseOffering/],
      ['#/tools', 'Tools'],
      ['#/metrics', 'Metrics'],
    ]) {
      await visit(page, hash, heading, hash);
    }
    await shoot(page, 'metrics');
  });

  await step('no script error and no CSP violation on any page', async () => {
    assert.deepEqual(problems, []);
  });
  console.log(`axe-core ran on ${audited.length} pages: ${[...new Set(audited)].join('; ')}`);
} catch (error) {
  if (problems.length) console.log(`also: ${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
