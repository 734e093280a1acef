// The catalog: one page per kind (list, create, view, edit, delete), with what each kind
// needs besides: an offering's fill bar, an order's payments.

import { h, show, alertBox, notify, confirmDialog, labelled, formatValue, htmlPreview, tableBox } from './dom.js';
import { api, session, can, describe, enc, ApiError } from './api.js';
import { schema, groupedView, editForm, patchFrom, readForm, label } from './fields.js';

/// resource, title, schema, columns, whether clients create and delete them.
export const KINDS = [
  ['courses', 'Courses', 'Course', ['name', 'code'], true],
  ['courseOfferings', 'Course offerings', 'CourseOffering', ['name', 'course_id', 'start_date', 'capacity', 'price'], true],
  ['contacts', 'Contacts', 'Contact', ['name', 'first_name', 'last_name', 'email_address'], true],
  ['registrationProcesses', 'Registration processes', 'RegistrationProcess', ['name', 'course_id', 'default_status'], true],
  ['emailTemplates', 'Email templates', 'EmailTemplate', ['name', 'subject'], true],
  ['orders', 'Orders', 'Order', ['number', 'contact_id', 'total', 'amount_paid', 'balance_due', 'status'], false],
];

const kindOf = (resource) => KINDS.find(([r]) => r === resource);
const base = (resource) => `/${resource}/${enc(session.tenant)}`;

function failInto(box) {
  return (error) => {
    const { title, lines } = describe(error);
    box.replaceChildren(alertBox(title, lines));
  };
}

/// An offering's seats: `sys_seats_taken`, which the server shows with every offering.
function fillBar({ sys_seats_taken: taken, capacity, name }) {
  if (taken === undefined) return '—';
  if (capacity === undefined || capacity === null) {
    return h('span', { class: 'fill' }, `${taken} registered (no capacity)`);
  }
  return h('span', { class: 'fill' },
    h('meter', { min: 0, max: Math.max(capacity, 1), value: taken, low: capacity * 0.75, high: capacity * 0.95, optimum: 0,
      'aria-label': `Seats taken in ${name ?? 'the offering'}` }),
    h('span', { class: 'seats', dataset: { taken: String(taken), capacity: String(capacity) } }, `${taken} of ${capacity} seats taken`));
}

export async function catalogList(resource) {
  const [, title, , columns, clientOwned] = kindOf(resource);
  const messages = h('div');
  const results = h('div');
  const pages = [];
  let token = null;

  async function load(at, how) {
    try {
      const r = await api('GET', base(resource), { query: { limit: 25, exclusiveStartKey: at ?? undefined } });
      if (how === 'next') pages.push(token);
      token = at;
      const next = r.headers.get('X-Last-Evaluated-Key');
      results.replaceChildren(tableBox(title, h('table', null,
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'id'), columns.map((c) => h('th', { scope: 'col' }, label(c))),
          resource === 'courseOfferings' ? h('th', { scope: 'col' }, 'seats') : null)),
        h('tbody', null, r.data.map((rec) => h('tr', null,
          h('td', null, h('a', { href: `#/catalog/${resource}/${enc(rec.id)}` }, rec.id)),
          columns.map((c) => h('td', null, formatValue(rec[c]))),
          resource === 'courseOfferings' ? h('td', null, fillBar(rec)) : null))))),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', disabled: pages.length === 0, onclick: () => load(pages.pop() ?? null, 'back') }, 'Previous page'),
        h('button', { type: 'button', class: 'secondary', disabled: !next, onclick: () => load(next, 'next') }, 'Next page')));
    } catch (error) { failInto(messages)(error); }
  }

  const newLink = clientOwned && can('write') ? h('a', { href: `#/catalog/${resource}/new`, class: 'badge' }, `New ${title.toLowerCase().replace(/s$/, '')}`) : null;
  show(h('h1', null, title), h('div', { class: 'actions' }, newLink), messages, results);
  await load(null, 'new');
}

export async function catalogRecord(resource, id) {
  const [, title, type, , clientOwned] = kindOf(resource);
  const messages = h('div');
  let current;
  try {
    current = await api('GET', `${base(resource)}/${enc(id)}`);
  } catch (error) {
    show(h('h1', null, title), messages);
    failInto(messages)(error);
    return;
  }
  const record = current.data;
  const fail = failInto(messages);
  const actions = h('div', { class: 'actions' });
  const extra = h('div');
  if (can('write')) {
    actions.append(h('button', { type: 'button', onclick: () => catalogEdit(resource, id) }, 'Edit'));
    if (resource === 'orders') extra.append(paymentForm(record, current.etag, fail, () => catalogRecord(resource, id)));
    if (clientOwned) {
      actions.append(h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!(await confirmDialog(`Delete this ${type}?`, 'Delete', 'Keep it'))) return;
        try {
          await api('DELETE', `${base(resource)}/${enc(id)}`, { ifMatch: current.etag });
          notify('Deleted.');
          location.hash = `#/catalog/${resource}`;
        } catch (error) { fail(error); }
      } }, 'Delete'));
    }
  }
  const fill = resource === 'courseOfferings'
    ? h('p', null, fillBar(record))
    : null;
  show(h('h1', null, `${title.replace(/s$/, '')}: ${record.name ?? record.number ?? record.id}`),
    h('p', { class: 'muted' }, `id ${record.id} · version ${record.sys_version}`),
    fill, messages, actions, extra, groupedView(record, [['Fields', Object.keys(record).filter((k) => !k.startsWith('sys_') && k !== 'id')]]));
}

/// Records a payment on an order: its amount_paid grows by the amount (balance_due follows).
function paymentForm(order, etag, fail, done) {
  const amount = h('input', { type: 'number', step: '0.01', min: '0.01', required: true });
  return h('form', { class: 'panel', 'aria-label': 'Record a payment', onsubmit: async (e) => {
    e.preventDefault();
    const paid = Math.round(((order.amount_paid ?? 0) + Number(amount.value)) * 100) / 100;
    try {
      await api('PATCH', `/orders/${enc(session.tenant)}/${enc(order.id)}`, {
        body: [{ op: order.amount_paid === undefined ? 'add' : 'replace', path: '/amount_paid', value: paid }],
        type: 'application/json-patch+json', ifMatch: etag });
      notify(`A payment of ${amount.value} was recorded.`);
      done();
    } catch (error) { fail(error); }
  } },
  h('h2', null, 'Record a payment'),
  h('p', null, `Total ${formatValue(order.total)} · paid ${formatValue(order.amount_paid)} · due ${formatValue(order.balance_due)}`),
  h('div', { class: 'grid' }, labelled('Amount received', amount)),
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Record payment')));
}

export async function catalogEdit(resource, id) {
  const [, title, type] = kindOf(resource);
  const input = await schema(`${type}Input`);
  const current = id ? await api('GET', `${base(resource)}/${enc(id)}`) : { data: {} };
  const { grid, controls } = editForm(input, current.data);
  const messages = h('div');
  show(h('h1', null, id ? `Edit ${type}` : `New ${title.toLowerCase().replace(/s$/, '')}`), messages,
    h('form', { 'aria-label': id ? `Edit ${type}` : `New ${type}`, onsubmit: async (e) => {
      e.preventDefault();
      try {
        let target = id;
        if (id) {
          const ops = patchFrom(current.data, controls);
          if (ops.length) await api('PATCH', `${base(resource)}/${enc(id)}`, { body: ops, type: 'application/json-patch+json', ifMatch: current.etag });
        } else {
          target = (await api('POST', base(resource), { body: readForm(controls) })).data.id;
        }
        notify('Saved.');
        location.hash = `#/catalog/${resource}/${enc(target)}`;
      } catch (error) {
        if (error instanceof ApiError && error.code === 'version_conflict') {
          messages.replaceChildren(alertBox('Someone else changed this record since you opened it. Nothing was saved.',
            [error.message]), h('button', { type: 'button', onclick: () => catalogEdit(resource, id) }, 'Reload the other version'));
        } else if (error instanceof Error && !(error instanceof ApiError)) {
          messages.replaceChildren(alertBox('A field cannot be read.', [error.message]));
        } else {
          failInto(messages)(error);
        }
      }
    } }, grid, h('div', { class: 'actions' }, h('button', { type: 'submit' }, id ? 'Save' : 'Create'))),
    resource === 'emailTemplates' ? await livePreview(controls) : null);
}

/// A template's preview, rendered by the server (previewEmail with dryRun: the same renderer,
/// sandbox and limits as real mail; nothing is sent) as the template is typed, with one of
/// the tenant's registrations in scope.
async function livePreview(controls) {
  const field = (name) => controls.find((c) => c.name === name);
  const registration = h('input', { type: 'text', autocomplete: 'off' });
  try {
    const first = await api('GET', `/courseRegistrations/${enc(session.tenant)}`, { query: { limit: 1, fields: 'id' } });
    if (first.data[0]) registration.value = first.data[0].id;
  } catch { /* the user can type one */ }
  const output = h('div', { 'aria-live': 'polite' });
  let timer = null;
  let generation = 0;
  const render = async () => {
    const mine = ++generation;
    const template = { subject: field('subject').read() ?? '', html: field('html').read(), text: field('text').read() };
    if (!registration.value) {
      output.replaceChildren(h('p', { class: 'muted' }, 'Give a registration id to preview with.'));
      return;
    }
    try {
      const r = await api('POST', `/courseRegistrations/${enc(session.tenant)}/previewEmail`, {
        query: { dryRun: 'true' },
        body: { registration_id: registration.value.trim(), destination_email_address: 'preview@example.org', email_template: template } });
      if (mine !== generation) return;
      output.replaceChildren(h('h3', null, `Subject: ${r.data.subject}`),
        r.data.html ? htmlPreview(r.data.html, 'The template\'s html part, rendered') : null,
        r.data.text ? h('pre', { class: 'preview' }, r.data.text) : null);
    } catch (error) {
      if (mine !== generation) return;
      const { title, lines } = describe(error);
      output.replaceChildren(alertBox(title, lines));
    }
  };
  const soon = () => { clearTimeout(timer); timer = setTimeout(render, 400); };
  for (const name of ['subject', 'html', 'text']) field(name)?.el.addEventListener('input', soon);
  registration.addEventListener('input', soon);
  render();
  return h('section', { class: 'panel', 'aria-label': 'Live preview' }, h('h2', null, 'Live preview'),
    labelled('Registration in scope', registration), output);
}
