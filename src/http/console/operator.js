// The operator's pages: tenants and their limits; keys (the secret shown once) and their
// revocation; check, backup, export and import with progress; the metrics at a glance.
// A tenant admin key sees the keys and the export of its own tenant.

import { h, show, alertBox, notify, confirmDialog, labelled, formatValue, rerender } from './dom.js';
import { api, session, isOperator, describe, enc, setTenant, ApiError } from './api.js';

const failInto = (box) => (error) => {
  const { title, lines } = describe(error);
  box.replaceChildren(alertBox(title, lines));
};

const LIMITS = [
  ['requests_per_second', 'Requests per second'],
  ['max_registrations', 'Most registrations'],
  ['max_storage_bytes', 'Most stored bytes'],
];

function limitInputs(limits = {}) {
  const inputs = Object.fromEntries(LIMITS.map(([name]) => [name,
    h('input', { type: 'number', min: '0', step: name === 'requests_per_second' ? 'any' : '1', value: limits[name] ?? '', placeholder: 'no limit' })]));
  const read = () => Object.fromEntries(LIMITS.map(([name]) => [name, inputs[name].value === '' ? null : Number(inputs[name].value)]));
  return { grid: h('div', { class: 'grid' }, LIMITS.map(([name, text]) => labelled(text, inputs[name]))), read };
}

export async function tenantsPage() {
  const messages = h('div');
  const fail = failInto(messages);
  let tenants = [];
  try { tenants = (await api('GET', '/admin/tenants')).data; } catch (error) { fail(error); }
  const items = Array.isArray(tenants) ? tenants : tenants.Items ?? [];
  const id = h('input', { type: 'text', required: true, autocomplete: 'off' });
  const limits = limitInputs();
  show(h('h1', null, 'Tenants'), messages,
    h('div', { class: 'table-wrap' }, h('table', null,
      h('thead', null, h('tr', null, ['tenant', 'created', ...LIMITS.map(([, t]) => t), ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, items.map((t) => tenantRow(t, fail))))),
    h('form', { class: 'panel', 'aria-label': 'New tenant', onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api('POST', '/admin/tenants', { body: { id: id.value, limits: limits.read() } });
        notify(`Tenant ${id.value} was made.`);
        rerender();
      } catch (error) { fail(error); }
    } }, h('h2', null, 'New tenant'), h('div', { class: 'grid' }, labelled('Tenant id', id)), limits.grid,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create tenant'))));
}

function tenantRow(tenant, fail) {
  const limits = limitInputs(tenant.limits);
  const row = h('tr', null,
    h('th', { scope: 'row' }, h('a', { href: '#/registrations', onclick: () => setTenant(tenant.id) }, tenant.id)),
    h('td', null, formatValue(tenant.created_at)),
    LIMITS.map(([name]) => h('td', null, formatValue(tenant.limits?.[name]))),
    h('td', null, h('button', { type: 'button', class: 'secondary', onclick: () => {
      row.after(h('tr', null, h('td', { colspan: 6 }, h('form', { 'aria-label': `Limits of ${tenant.id}`, onsubmit: async (e) => {
        e.preventDefault();
        try {
          await api('PATCH', `/admin/tenants/${enc(tenant.id)}`, { body: { limits: limits.read() } });
          notify(`The limits of ${tenant.id} were saved.`);
          tenantsPage();
        } catch (error) { fail(error); }
      } }, limits.grid, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save limits'))))));
    } }, 'Edit limits')));
  return row;
}

export async function keysPage() {
  const tenant = session.tenant;
  const messages = h('div');
  const fail = failInto(messages);
  const secret = h('div', { 'aria-live': 'polite' });
  let keys = [];
  try {
    const r = (await api('GET', `/admin/tenants/${enc(tenant)}/keys`)).data;
    keys = Array.isArray(r) ? r : r.Items ?? [];
  } catch (error) { fail(error); }
  const role = h('select', null, ['read', 'write', 'admin'].map((r) => h('option', { value: r }, r)));
  const name = h('input', { type: 'text', autocomplete: 'off' });
  show(h('h1', null, `Keys of ${tenant}`), messages, secret,
    h('div', { class: 'table-wrap' }, h('table', null,
      h('thead', null, h('tr', null, ['key id', 'name', 'role', 'created', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, keys.map((k) => h('tr', null,
        h('td', null, k.id), h('td', null, formatValue(k.name)), h('td', null, k.role), h('td', null, formatValue(k.created_at)),
        h('td', null, h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!(await confirmDialog(`Revoke key ${k.id}? Clients using it are refused at once.`, 'Revoke', 'Keep it'))) return;
          try {
            await api('DELETE', `/admin/tenants/${enc(tenant)}/keys/${enc(k.id)}`);
            notify(`Key ${k.id} was revoked.`);
            keysPage();
          } catch (error) { fail(error); }
        } }, 'Revoke'))))))),
    h('form', { class: 'panel', 'aria-label': 'New key', onsubmit: async (e) => {
      e.preventDefault();
      try {
        const made = (await api('POST', `/admin/tenants/${enc(tenant)}/keys`, { body: { role: role.value, name: name.value || undefined } })).data;
        await keysPage();
        document.getElementById('main').prepend(h('div', { class: 'panel', role: 'alert' },
          h('strong', null, `Key ${made.id} (${made.role}). Copy the secret now: it is shown only once.`),
          h('p', { class: 'secret' }, made.key)));
      } catch (error) { fail(error); }
    } }, h('h2', null, 'New key'), h('div', { class: 'grid' }, labelled('Role', role), labelled('Name', name)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create key'))));
}

export async function toolsPage() {
  const messages = h('div');
  const fail = failInto(messages);
  const tenant = session.tenant;
  const sections = [];

  if (isOperator()) {
    const repair = h('input', { type: 'checkbox' });
    const report = h('div');
    sections.push(h('form', { class: 'panel', 'aria-label': 'Check', onsubmit: async (e) => {
      e.preventDefault();
      report.replaceChildren(h('p', null, h('progress', { 'aria-label': 'Checking' }), ' Checking…'));
      try {
        const r = (await api('POST', '/admin/check', { body: { tenant, repair: repair.checked } })).data;
        const problems = r.problems ?? r.findings ?? [];
        report.replaceChildren(h('p', null, problems.length ? `${problems.length} problem(s) found.` : 'No problem found.'),
          problems.length ? h('pre', { class: 'preview' }, JSON.stringify(problems, null, 1)) : null,
          h('details', null, h('summary', null, 'Full report'), h('pre', { class: 'preview' }, JSON.stringify(r, null, 1))));
      } catch (error) { report.replaceChildren(); fail(error); }
    } }, h('h2', null, `Check ${tenant}`),
    h('label', null, repair, ' Repair what differs from the records'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Run check')), report));

    const to = h('input', { type: 'text', required: true, placeholder: '/var/backups/registrar-2026-12-05' });
    const done = h('div');
    sections.push(h('form', { class: 'panel', 'aria-label': 'Backup', onsubmit: async (e) => {
      e.preventDefault();
      done.replaceChildren(h('p', null, h('progress', { 'aria-label': 'Backing up' }), ' Copying…'));
      try {
        const r = (await api('POST', '/admin/backup', { body: { to: to.value } })).data;
        done.replaceChildren(h('p', null, `Copied ${r.entries} entries of ${r.trees} trees to ${r.to}.`));
      } catch (error) { done.replaceChildren(); fail(error); }
    } }, h('h2', null, 'Backup'), labelled('Directory on the server (absolute, new or empty)', to),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Back up')), done));
  }

  // Export: streamed, with the bytes received so far; saved as a file.
  const format = h('select', null, h('option', { value: 'ndjson' }, 'NDJSON (every record)'), h('option', { value: 'csv' }, 'CSV (registrations)'));
  const exportProgress = h('p', { 'aria-live': 'polite' });
  sections.push(h('form', { class: 'panel', 'aria-label': 'Export', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const response = await fetch(`/admin/tenants/${enc(tenant)}/export?format=${format.value}`, { headers: { Authorization: `Bearer ${session.key}` } });
      if (!response.ok) {
        throw new ApiError(response.status, await response.json().catch(() => null));
      }
      const reader = response.body.getReader();
      const chunks = [];
      let bytes = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        bytes += value.length;
        exportProgress.textContent = `${bytes.toLocaleString()} bytes received…`;
      }
      exportProgress.textContent = `Done: ${bytes.toLocaleString()} bytes.`;
      const link = h('a', { href: URL.createObjectURL(new Blob(chunks)), download: `${tenant}.${format.value}` }, 'Save the export');
      exportProgress.append(' ', link);
    } catch (error) { fail(error); }
  } }, h('h2', null, `Export ${tenant}`), labelled('Format', format),
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Export')), exportProgress));

  if (isOperator()) {
    // Import: uploaded with XMLHttpRequest, the one browser API that reports upload progress.
    const file = h('input', { type: 'file', accept: '.ndjson,.jsonl,.csv', required: true });
    const allOrNothing = h('input', { type: 'checkbox' });
    const bar = h('progress', { max: 1, value: 0, 'aria-label': 'Upload' });
    const result = h('div', { 'aria-live': 'polite' });
    sections.push(h('form', { class: 'panel', 'aria-label': 'Import', onsubmit: (e) => {
      e.preventDefault();
      const chosen = file.files[0];
      if (!chosen) return;
      const xhr = new XMLHttpRequest();
      const query = new URLSearchParams({ allOrNothing: String(allOrNothing.checked), sourceFile: chosen.name });
      xhr.open('POST', `/admin/tenants/${enc(tenant)}/import?${query}`);
      xhr.setRequestHeader('Authorization', `Bearer ${session.key}`);
      xhr.setRequestHeader('Content-Type', chosen.name.endsWith('.csv') ? 'text/csv' : 'application/x-ndjson');
      xhr.upload.onprogress = (p) => { if (p.lengthComputable) { bar.max = p.total; bar.value = p.loaded; } };
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status >= 400) {
          const error = body?.error ?? {};
          result.replaceChildren(alertBox(`The import was refused (${error.code ?? xhr.status}).`, [error.message ?? xhr.statusText]));
        } else {
          result.replaceChildren(h('pre', { class: 'preview' }, JSON.stringify(body, null, 1)));
        }
      };
      xhr.onerror = () => result.replaceChildren(alertBox('The server could not be reached.'));
      xhr.send(chosen);
    } }, h('h2', null, `Import into ${tenant}`), labelled('File (NDJSON or CSV)', file),
    h('label', null, allOrNothing, ' All or nothing'), h('p', null, bar),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Import')), result));
  }
  show(h('h1', null, 'Tools'), messages, sections);
}

/// A few figures from the Prometheus text at /metrics.
export async function metricsPage() {
  const messages = h('div');
  let text = '';
  try { text = (await api('GET', '/metrics', { headers: { Accept: 'text/plain' } })).data; } catch (error) { failInto(messages)(error); }
  const samples = String(text).split('\n').filter((l) => l && !l.startsWith('#')).map((l) => {
    const at = l.lastIndexOf(' ');
    return [l.slice(0, at), Number(l.slice(at + 1))];
  });
  const sum = (prefix) => samples.filter(([n]) => n.startsWith(prefix)).reduce((a, [, v]) => a + (Number.isFinite(v) ? v : 0), 0);
  const families = [...new Set(samples.map(([n]) => n.replace(/\{.*$/, '')))];
  show(h('h1', null, 'Metrics'), messages,
    h('div', { class: 'grid' }, families.slice(0, 24).map((f) => h('div', { class: 'panel' },
      h('div', { class: 'muted' }, f), h('strong', null, sum(f).toLocaleString())))),
    h('details', null, h('summary', null, 'Everything (Prometheus text)'), h('pre', { class: 'preview' }, String(text))));
}
