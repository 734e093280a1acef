// The registrations table: search on every criterion, lookups by student, course and
// offering, paging on the API's own LastEvaluatedKey, and a column chooser (`fields`).

import { h, labelled, show, alertBox, formatValue, nextId } from './dom.js';
import { api, session, can, describe, enc } from './api.js';
import { schema, properties, enumOf, label, DEFAULT_COLUMNS } from './fields.js';

const COLUMNS_KEY = 'registrar.columns';

/// The search criteria, by kind (the search body's schema names them; these say how each is
/// asked for): lists of ids, enum lists, ranges of dates or numbers, and substrings.
const ID_LISTS = ['ids', 'course_id', 'course_offering_id', 'order_id', 'training_provider_id', 'training_location_id'];
const ENUM_LISTS = ['status', 'order_status'];
const DATE_RANGES = ['date', 'arrival_date', 'departure_date', 'sys_created_at'];
const NUMBER_RANGES = ['order_total', 'order_amount_paid', 'order_balance_due'];
const NUMBER_LISTS = ['order_number'];
const SUBSTRINGS = ['name', 'email_address', 'job_title', 'city', 'state'];

const LOOKUPS = [
  ['student', 'Student id'],
  ['course', 'Course id'],
  ['courseOffering', 'Course offering id'],
];

export async function registrationsPage() {
  const tenant = session.tenant;
  const registration = await schema('CourseRegistration');
  const allFields = properties(registration).map(([n]) => n).filter((n) => n !== 'id');
  let columns = JSON.parse(sessionStorage.getItem(COLUMNS_KEY) ?? 'null') ?? DEFAULT_COLUMNS;
  columns = columns.filter((c) => allFields.includes(c));

  const results = h('div', { 'aria-live': 'polite' });
  const state = { mode: 'list', body: null, lookup: null, pages: [], token: null };

  // ---- search form: the common criteria first, the others folded under "More criteria".
  const inputs = {};
  const main = h('div', { class: 'grid' });
  const more = h('div', { class: 'grid' });
  const PRIMARY = new Set(['name', 'email_address', 'status', 'date', 'course_offering_id']);
  const place = (name, node) => (PRIMARY.has(name) ? main : more).append(node);
  for (const name of SUBSTRINGS) {
    inputs[name] = h('input', { type: 'search', name });
    place(name, labelled(`${label(name)} contains`, inputs[name]));
  }
  for (const name of ENUM_LISTS) {
    const options = enumOf(registration.properties[name]) ?? [];
    inputs[name] = h('select', { name, multiple: true, size: Math.min(options.length, 4) },
      options.map((o) => h('option', { value: o }, o)));
    place(name, labelled(label(name), inputs[name], 'Ctrl/⌘-click for several'));
  }
  for (const name of ID_LISTS) {
    inputs[name] = h('input', { type: 'text', name, autocomplete: 'off' });
    place(name, labelled(`${label(name)} (one or more, comma-separated)`, inputs[name]));
  }
  for (const name of NUMBER_LISTS) {
    inputs[name] = h('input', { type: 'text', name, inputmode: 'decimal' });
    place(name, labelled(`${label(name)} (comma-separated)`, inputs[name]));
  }
  const range = (name, type, low, high, lowText, highText) => {
    const a = h('input', { type, step: type === 'number' ? 'any' : undefined, 'aria-label': `${label(name)} ${lowText}` });
    const b = h('input', { type, step: type === 'number' ? 'any' : undefined, 'aria-label': `${label(name)} ${highText}` });
    inputs[name] = [a, b];
    const group = nextId('g');
    place(name, h('div', { class: 'field', role: 'group', 'aria-labelledby': group },
      h('span', { class: 'label', id: group }, `${label(name)} ${low} / ${high}`), h('div', { class: 'range' }, a, b)));
  };
  for (const name of DATE_RANGES) range(name, 'date', 'from', 'to', 'from', 'to');
  for (const name of NUMBER_RANGES) range(name, 'number', 'min', 'max', 'at least', 'at most');
  const criteria = [main, h('details', { class: 'more' }, h('summary', null, 'More criteria'), more)];

  function searchBody() {
    const body = {};
    for (const name of SUBSTRINGS) if (inputs[name].value.trim()) body[name] = inputs[name].value.trim();
    for (const name of ENUM_LISTS) {
      const chosen = [...inputs[name].selectedOptions].map((o) => o.value);
      if (chosen.length) body[name] = chosen;
    }
    for (const name of ID_LISTS) {
      const ids = inputs[name].value.split(',').map((s) => s.trim()).filter(Boolean);
      if (ids.length) body[name] = ids;
    }
    for (const name of NUMBER_LISTS) {
      const numbers = inputs[name].value.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
      if (numbers.length) body[name] = numbers;
    }
    for (const name of DATE_RANGES) {
      const [from, to] = inputs[name];
      if (from.value || to.value) {
        body[name] = [from.value ? `${from.value}T00:00:00Z` : null, to.value ? `${to.value}T23:59:59.999Z` : null];
      }
    }
    for (const name of NUMBER_RANGES) {
      const [min, max] = inputs[name];
      if (min.value || max.value) body[name] = [min.value ? Number(min.value) : null, max.value ? Number(max.value) : null];
    }
    return body;
  }

  const searchForm = h('form', { class: 'panel', 'aria-label': 'Search registrations',
    onsubmit: (e) => { e.preventDefault(); state.mode = 'search'; state.body = searchBody(); load(null); } },
    h('h2', null, 'Search'), criteria,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Search'),
      h('button', { type: 'reset', class: 'secondary', onclick: () => { state.mode = 'list'; setTimeout(() => load(null)); } }, 'Clear')));

  // ---- lookups
  const lookupKind = h('select', { name: 'lookup' }, LOOKUPS.map(([v, t]) => h('option', { value: v }, t)));
  const lookupValue = h('input', { type: 'text', name: 'lookup-id', autocomplete: 'off', required: true });
  const activeOnly = h('input', { type: 'checkbox', name: 'active-only' });
  const lookupForm = h('form', { class: 'panel', 'aria-label': 'Look up registrations',
    onsubmit: (e) => {
      e.preventDefault();
      state.mode = 'lookup';
      state.lookup = { kind: lookupKind.value, id: lookupValue.value.trim(), active: activeOnly.checked };
      load(null);
    } },
    h('h2', null, 'Look up'),
    h('div', { class: 'grid' }, labelled('By', lookupKind), labelled('Id', lookupValue),
      h('div', { class: 'field' }, h('label', null, activeOnly, ' active only'))),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Look up')));

  // ---- columns
  const chooser = h('details', { class: 'columns' }, h('summary', null, 'Columns'),
    h('div', null, allFields.map((name) => h('label', null,
      h('input', { type: 'checkbox', value: name, checked: columns.includes(name),
        onchange: (e) => {
          columns = e.target.checked ? [...columns, name] : columns.filter((c) => c !== name);
          columns = allFields.filter((f) => columns.includes(f));
          sessionStorage.setItem(COLUMNS_KEY, JSON.stringify(columns));
          load(state.token, 'same');
        } }), ' ', label(name)))));

  // `how`: 'new' (a first page), 'next', 'back' (to the page before) or 'same' (again).
  async function load(token, how = 'new') {
    const query = { limit: 25, exclusiveStartKey: token ?? undefined };
    const fields = ['id', ...columns].join(',');
    results.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      let items;
      let next;
      if (state.mode === 'search') {
        const r = await api('POST', `/courseRegistrations/${enc(tenant)}/search`, { body: state.body, query: { ...query, fieldsToReturn: fields } });
        items = r.data.Items; next = r.data.LastEvaluatedKey;
      } else if (state.mode === 'lookup') {
        const { kind, id, active } = state.lookup;
        const r = await api('GET', `/courseRegistrations/${enc(tenant)}/${kind}/${enc(id)}`, { query: { ...query, fields, includeActiveOnly: active ? 'true' : undefined } });
        items = r.data.Items; next = r.data.LastEvaluatedKey;
      } else {
        const r = await api('GET', `/courseRegistrations/${enc(tenant)}`, { query: { ...query, fields } });
        items = r.data; next = r.headers.get('X-Last-Evaluated-Key');
      }
      if (how === 'new') state.pages = [];
      if (how === 'next') state.pages.push(state.token);
      state.token = token;
      render(items, next);
    } catch (error) {
      const { title, lines } = describe(error);
      results.replaceChildren(alertBox(title, lines));
    }
  }

  function render(items, next) {
    const head = h('tr', null, h('th', { scope: 'col' }, 'id'), columns.map((c) => h('th', { scope: 'col' }, label(c))));
    const rows = items.map((r) => h('tr', null,
      h('td', null, h('a', { href: `#/registrations/${enc(r.id)}` }, r.id)),
      columns.map((c) => h('td', null, formatValue(r[c])))));
    const caption = { list: 'All registrations', search: 'Search results', lookup: 'Lookup results' }[state.mode];
    results.replaceChildren(
      h('div', { class: 'table-wrap' }, h('table', null, h('caption', { class: 'muted' }, `${caption}: ${items.length} on this page`),
        h('thead', null, head), h('tbody', null, rows))),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', disabled: state.pages.length === 0,
          onclick: () => load(state.pages.pop() ?? null, 'back') }, 'Previous page'),
        h('button', { type: 'button', class: 'secondary', disabled: !next, onclick: () => load(next, 'next') }, 'Next page')));
  }

  const create = can('write') ? h('a', { href: '#/registrations/new', class: 'badge' }, 'New registration') : null;
  show(h('h1', null, 'Registrations'), h('div', { class: 'actions' }, chooser, create), searchForm, lookupForm, h('h2', null, 'Registrations'), results);
  await load(null);
}
