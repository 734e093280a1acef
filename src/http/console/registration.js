// One registration: every field, grouped; edit with If-Match (a conflict shows the other
// version and offers a reload); cancel; delete; generateOrder; previewEmail; history.

import { h, show, alertBox, notify, confirmDialog, labelled, htmlPreview, formatValue } from './dom.js';
import { api, session, can, describe, enc, ApiError, openapi } from './api.js';
import { schema, groupedView, editForm, patchFrom, readForm, REGISTRATION_GROUPS, label } from './fields.js';

const base = () => `/courseRegistrations/${enc(session.tenant)}`;

export async function registrationPage(id) {
  let current;
  try {
    current = await api('GET', `${base()}/${enc(id)}`);
  } catch (error) {
    const { title, lines } = describe(error);
    show(h('h1', null, 'Registration'), alertBox(title, lines));
    return;
  }
  const record = current.data;
  const messages = h('div');
  const actions = h('div', { class: 'actions' });
  const extra = h('div');

  const fail = (error) => {
    const { title, lines } = describe(error);
    messages.replaceChildren(alertBox(title, lines));
  };

  if (can('write')) {
    actions.append(
      h('button', { type: 'button', onclick: () => editPage(id) }, 'Edit'),
      record.status !== 'cancelled' && h('button', { type: 'button', class: 'secondary', onclick: async () => {
        if (!(await confirmDialog('Cancel this registration? Its seat is given back.', 'Cancel registration', 'Keep it'))) return;
        try {
          await api('PATCH', `${base()}/${enc(id)}`, { body: [{ op: 'replace', path: '/status', value: 'cancelled' }],
            type: 'application/json-patch+json', ifMatch: current.etag });
          notify('The registration is cancelled.');
          registrationPage(id);
        } catch (error) { fail(error); }
      } }, 'Cancel registration'),
      !record.order_id && h('button', { type: 'button', class: 'secondary', onclick: async () => {
        try {
          const order = await api('POST', `${base()}/generateOrder`, { body: { id } });
          notify(`Order ${order.data.number ?? order.data.id} was made.`);
          registrationPage(id);
        } catch (error) { fail(error); }
      } }, 'Generate order'),
      h('button', { type: 'button', class: 'secondary', onclick: () => previewForm(id, extra, fail) }, 'Preview email'),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!(await confirmDialog('Delete this registration for good?', 'Delete', 'Keep it'))) return;
        try {
          await api('DELETE', `${base()}/${enc(id)}`, { ifMatch: current.etag });
          notify('The registration was deleted.');
          location.hash = '#/registrations';
        } catch (error) { fail(error); }
      } }, 'Delete'));
  }

  show(h('h1', null, `Registration ${record.number ?? ''}`.trim()),
    h('p', { class: 'muted' }, `id ${record.id} · version ${record.sys_version}`),
    messages, actions, extra,
    groupedView(record, REGISTRATION_GROUPS),
    await historySection(id));
}

/// The record's history, newest first, when the server keeps one.
async function historySection(id) {
  const doc = await openapi();
  if (!Object.keys(doc.paths).some((p) => p.startsWith('/courseRegistrations/') && p.endsWith('/history'))) return null;
  try {
    const r = await api('GET', `${base()}/${enc(id)}/history`, { query: { limit: 20 } });
    const items = r.data.Items ?? [];
    return h('section', { class: 'panel' }, h('h2', null, 'History'),
      h('div', { class: 'table-wrap' }, h('table', null,
        h('thead', null, h('tr', null, ['version', 'change', 'when', 'key', 'patch'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, items.map((e) => h('tr', null,
          h('td', null, formatValue(e.sys_version)), h('td', null, formatValue(e.op)), h('td', null, formatValue(e.at)),
          h('td', null, `${formatValue(e.key_id)} (${formatValue(e.role)})`),
          h('td', null, h('code', null, JSON.stringify(e.patch)))))))));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404 && error.code === 'route_not_found') return null;
    const { title, lines } = describe(error);
    return h('section', { class: 'panel' }, h('h2', null, 'History'), alertBox(title, lines));
  }
}

function previewForm(id, into, fail) {
  const to = h('input', { type: 'email', required: true, autocomplete: 'off' });
  const subject = h('input', { type: 'text' });
  const text = h('textarea', { rows: 4 });
  const output = h('div');
  into.replaceChildren(h('form', { class: 'panel', 'aria-label': 'Preview email', onsubmit: async (e) => {
    e.preventDefault();
    const body = { registration_id: id, destination_email_address: to.value };
    if (subject.value) body.email_template = { subject: subject.value, text: text.value || undefined };
    try {
      const sent = (await api('POST', `${base()}/previewEmail`, { body })).data;
      output.replaceChildren(h('h3', null, `Subject: ${sent.subject}`),
        h('p', { class: 'muted' }, `to ${sent.to} · ${sent.transport} · ${sent.message_id}`),
        sent.html ? htmlPreview(sent.html, 'The email\'s html part') : null,
        sent.text ? h('pre', { class: 'preview' }, sent.text) : null);
    } catch (error) { fail(error); }
  } },
  h('h2', null, 'Preview email'),
  h('div', { class: 'grid' }, labelled('Send to', to),
    labelled('Subject', subject, 'Empty: the tenant\'s default confirmation template'),
    labelled('Text (minijinja)', text)),
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Render and send')), output));
}

export async function editPage(id) {
  const input = await schema('CourseRegistrationInput');
  let current = await api('GET', `${base()}/${enc(id)}`);
  const { grid, controls } = editForm(input, current.data, REGISTRATION_GROUPS);
  const messages = h('div');
  const form = h('form', { 'aria-label': 'Edit registration', onsubmit: async (e) => {
    e.preventDefault();
    let ops;
    try { ops = patchFrom(current.data, controls); } catch (error) { messages.replaceChildren(alertBox('A field cannot be read.', [error.message])); return; }
    if (!ops.length) { registrationPage(id); return; }
    try {
      await api('PATCH', `${base()}/${enc(id)}`, { body: ops, type: 'application/json-patch+json', ifMatch: current.etag });
      notify('Saved.');
      location.hash = `#/registrations/${enc(id)}`;
    } catch (error) {
      if (error instanceof ApiError && error.code === 'version_conflict') {
        const theirs = await api('GET', `${base()}/${enc(id)}`);
        messages.replaceChildren(conflictBox(current.data, theirs.data, ops, () => editPage(id)));
      } else {
        const { title, lines } = describe(error);
        messages.replaceChildren(alertBox(title, lines));
      }
    }
  } },
  grid,
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save'),
    h('a', { href: `#/registrations/${enc(id)}` }, 'Back without saving')));
  show(h('h1', null, `Edit registration ${current.data.number ?? ''}`.trim()),
    h('p', { class: 'muted' }, `Editing version ${current.data.sys_version}`), messages, form);
}

/// What another writer changed since this page read the record, beside what this page
/// would have written; a reload starts over from the other version.
function conflictBox(mine, theirs, ops, reload) {
  const changed = Object.keys({ ...mine, ...theirs })
    .filter((k) => !k.startsWith('sys_') && JSON.stringify(mine[k]) !== JSON.stringify(theirs[k]));
  const wanted = new Map(ops.map((o) => [o.path.slice(1), o.op === 'remove' ? undefined : o.value]));
  return h('div', { class: 'alert', role: 'alert' },
    h('strong', null, `Someone else changed this registration (now version ${theirs.sys_version}). Nothing was saved.`),
    h('div', { class: 'table-wrap' }, h('table', null,
      h('thead', null, h('tr', null, ['field', 'when you opened it', 'the other version', 'your change'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, [...new Set([...changed, ...wanted.keys()])].map((k) => h('tr', null,
        h('th', { scope: 'row' }, label(k)), h('td', null, formatValue(mine[k])), h('td', null, formatValue(theirs[k])),
        h('td', null, wanted.has(k) ? formatValue(wanted.get(k)) : '—')))))),
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: reload }, 'Reload the other version')));
}

export async function newRegistrationPage() {
  const input = await schema('CourseRegistrationInput');
  const { grid, controls } = editForm(input, {}, REGISTRATION_GROUPS);
  const messages = h('div');
  show(h('h1', null, 'New registration'), messages, h('form', { 'aria-label': 'New registration', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const made = await api('POST', base(), { body: readForm(controls) });
      notify('The registration was made.');
      location.hash = `#/registrations/${enc(made.data.id)}`;
    } catch (error) {
      const { title, lines } = describe(error);
      messages.replaceChildren(alertBox(title, lines));
    }
  } }, grid, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create'))));
}
