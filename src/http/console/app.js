// The console's entry: sign-in, the navigation (only what the key's role allows), the tenant
// chooser for the operator, and the hash router (#/registrations, #/catalog/courses, …).

import { h, show, alertBox, labelled } from './dom.js';
import { api, session, signIn, signOut, setTenant, can, isOperator, describe } from './api.js';
import { registrationsPage } from './registrations.js';
import { registrationPage, editPage, newRegistrationPage } from './registration.js';
import { KINDS, catalogList, catalogRecord, catalogEdit } from './catalog.js';
import { tenantsPage, keysPage, toolsPage, metricsPage } from './operator.js';

function signInPage(problem) {
  const key = h('input', { type: 'password', required: true, autocomplete: 'off', spellcheck: 'false' });
  show(h('div', { class: 'signin' },
    h('h1', null, 'Sign in'),
    h('p', null, 'Sign in with an API key: the operator key, or a key of your tenant. The key stays in this browser tab only.'),
    problem,
    h('form', { 'aria-label': 'Sign in', onsubmit: async (e) => {
      e.preventDefault();
      session.key = key.value.trim();
      try {
        const who = (await api('GET', '/whoami')).data;
        signIn(session.key, who);
        location.hash = who.principal === 'operator' ? '#/tenants' : '#/registrations';
        route();
      } catch (error) {
        session.key = null;
        const { title, lines } = describe(error);
        signInPage(alertBox(title, lines));
      }
    } }, labelled('API key', key), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')))));
  document.getElementById('nav').replaceChildren();
  document.getElementById('who').replaceChildren();
}

async function header() {
  const nav = document.getElementById('nav');
  const here = location.hash.split('/').slice(0, 3).join('/');
  const link = (href, text) => h('a', { href, 'aria-current': here.startsWith(href) ? 'page' : false }, text);
  const links = [];
  if (session.tenant) {
    links.push(link('#/registrations', 'Registrations'));
    for (const [resource, title] of KINDS) links.push(link(`#/catalog/${resource}`, title));
    if (can('admin')) links.push(link('#/keys', 'Keys'), link('#/tools', 'Tools'));
  }
  if (isOperator()) links.push(link('#/tenants', 'Tenants'), link('#/metrics', 'Metrics'));
  nav.replaceChildren(...links);

  const who = document.getElementById('who');
  const parts = [];
  if (isOperator()) {
    let tenants = [];
    try {
      const r = (await api('GET', '/admin/tenants')).data;
      tenants = Array.isArray(r) ? r : r.Items ?? [];
    } catch { /* shown on the page that needs it */ }
    // Choosing a tenant opens its registrations.
    const picker = h('select', { onchange: () => {
      setTenant(picker.value || null);
      if (location.hash === '#/registrations') route(); else location.hash = '#/registrations';
    } },
      h('option', { value: '' }, 'Choose a tenant'),
      tenants.map((t) => h('option', { value: t.id, selected: t.id === session.tenant }, t.id)));
    parts.push(labelledInline('Tenant', picker));
  } else {
    parts.push(h('span', null, `${session.tenant} · ${session.who.role} key`));
  }
  parts.push(h('button', { type: 'button', class: 'secondary', onclick: () => { signOut(); location.hash = ''; signInPage(); } }, 'Sign out'));
  who.replaceChildren(...parts);
}

function labelledInline(text, control) {
  control.id = 'tenant-picker';
  return h('span', null, h('label', { for: control.id }, `${text} `), control);
}

// Routes run one after another: a page still loading when the hash moves on finishes first,
// and the page of the newest hash renders last (it would otherwise be overwritten by the slower
// page it replaced).
let routing = Promise.resolve();
function route() {
  routing = routing.then(routeNow, routeNow);
  return routing;
}

async function routeNow() {
  if (!session.key) return signInPage();
  if (!session.who) {
    try {
      const who = (await api('GET', '/whoami')).data;
      signIn(session.key, who);
    } catch (error) {
      signOut();
      const { title, lines } = describe(error);
      return signInPage(alertBox(title, lines));
    }
  }
  await header();
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const [section, a, b, c] = parts;
  try {
    if (section === 'tenants' && isOperator()) return await tenantsPage();
    if (section === 'metrics' && isOperator()) return await metricsPage();
    if (!session.tenant) {
      return show(h('h1', null, 'Choose a tenant'), h('p', null, 'Choose the tenant to work on in the header, or create one under Tenants.'));
    }
    if (section === 'keys') return await keysPage();
    if (section === 'tools') return await toolsPage();
    if (section === 'catalog' && KINDS.some(([r]) => r === a)) {
      if (b === 'new') return await catalogEdit(a, null);
      if (b && c === 'edit') return await catalogEdit(a, b);
      if (b) return await catalogRecord(a, b);
      return await catalogList(a);
    }
    if (section === 'registrations' && a === 'new') return await newRegistrationPage();
    if (section === 'registrations' && a && b === 'edit') return await editPage(a);
    if (section === 'registrations' && a) return await registrationPage(a);
    return await registrationsPage();
  } catch (error) {
    const { title, lines } = describe(error);
    show(h('h1', null, 'Something went wrong'), alertBox(title, lines));
  }
}

window.addEventListener('hashchange', route);
route();
