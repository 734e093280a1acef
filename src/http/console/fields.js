// Fields: how a record's fields are grouped on its page, and the form controls that edit
// them. Types and enums come from the API description (openapi.js's schemas), so a field the
// server adds shows up here (in "Other") without a console change.

import { h, labelled, formatValue } from './dom.js';
import { openapi } from './api.js';

/// The registration page's groups, in the seed's order of subjects.
export const REGISTRATION_GROUPS = [
  ['Student', ['student_id', 'name', 'first_name', 'last_name', 'email_address', 'job_title',
    'organization_id', 'city', 'state', 'country']],
  ['Course and dates', ['course_id', 'course_offering_id', 'process_id', 'course_date', 'date',
    'arrival_date', 'departure_date', 'cancellation_date', 'training_provider_id', 'training_location_id']],
  ['Status', ['status', 'number', 'completion_percentage', 'exam_offering_ids', 'application_id',
    'event_registration_id']],
  ['Webinar', ['webinar_participant_id', 'webinar_join_url']],
  ['Order and payment', ['order_id', 'order_number', 'order_line_item_id', 'order_status', 'order_total',
    'order_amount_paid', 'order_balance_due', 'order_currency_code', 'order_currency_symbol']],
  ['Billing to the training provider', ['training_provider_billing_name', 'training_provider_billing_status',
    'training_provider_billing_date', 'training_provider_billing_invoice_id',
    'training_provider_billing_invoice_line_item_id']],
  ['Notes and custom fields', ['notes', 'custom_field_values']],
];

/// The main columns of the registrations table, shown until the user picks others.
export const DEFAULT_COLUMNS = ['number', 'name', 'email_address', 'status', 'course_id',
  'course_offering_id', 'date', 'order_status'];

/// The schema of a component (`CourseRegistration`, `Contact`, …), with `$ref`s resolved.
export async function schema(name) {
  const doc = await openapi();
  return doc.components.schemas[name];
}

/// Every property of a schema, in its order.
export function properties(s) {
  return Object.entries(s?.properties ?? {});
}

/// The enum a property allows, looking through `anyOf`/`oneOf` (nullable enums).
export function enumOf(prop) {
  if (!prop) return null;
  if (Array.isArray(prop.enum)) return prop.enum.filter((v) => v !== null);
  for (const alt of prop.anyOf ?? prop.oneOf ?? []) {
    const found = enumOf(alt);
    if (found) return found;
  }
  return null;
}

function typeOf(prop) {
  if (!prop) return 'string';
  const t = Array.isArray(prop.type) ? prop.type.find((x) => x !== 'null') : prop.type;
  if (t) return t;
  for (const alt of prop.anyOf ?? prop.oneOf ?? []) {
    const found = typeOf(alt);
    if (found && found !== 'null') return found;
  }
  return 'string';
}

export const label = (name) => name.replace(/^sys_/, 'sys ').replace(/_/g, ' ');

/// A definition list of fields, grouped; fields in no group go to "Other", sys_* to "System".
export function groupedView(record, groups) {
  const seen = new Set(['id']);
  const sections = [];
  for (const [title, names] of groups) {
    const present = names.filter((n) => n in record);
    present.forEach((n) => seen.add(n));
    if (present.length) sections.push(section(title, present, record));
  }
  const rest = Object.keys(record).filter((n) => !seen.has(n));
  const other = rest.filter((n) => !n.startsWith('sys_'));
  const system = rest.filter((n) => n.startsWith('sys_'));
  if (other.length) sections.push(section('Other', other, record));
  if (system.length) sections.push(section('System', system, record));
  return sections;
}

/// The catalog page a reference field points at.
const REFERENCES = {
  student_id: 'contacts', contact_id: 'contacts', course_id: 'courses', course_offering_id: 'courseOfferings',
  process_id: 'registrationProcesses', order_id: 'orders', email_template_id: 'emailTemplates',
};

function valueOf(name, value) {
  const kind = REFERENCES[name];
  if (kind && typeof value === 'string' && value) {
    return h('a', { href: `#/catalog/${kind}/${encodeURIComponent(value)}` }, value);
  }
  return formatValue(value);
}

function section(title, names, record) {
  return h('section', { class: 'panel' }, h('h2', null, title),
    h('dl', { class: 'record' }, names.map((n) => [h('dt', null, label(n)), h('dd', null, valueOf(n, record[n]))])));
}

/// A control for one property, holding `value`. Its `read()` gives the value to send
/// (undefined when left empty) or throws a message for a value that cannot be parsed.
export function control(name, prop, value) {
  const options = enumOf(prop);
  const type = typeOf(prop);
  let el;
  let read;
  if (options) {
    el = h('select', { name }, h('option', { value: '' }, '—'),
      options.map((o) => h('option', { value: o, selected: o === value }, o)));
    read = () => (el.value === '' ? undefined : el.value);
  } else if (type === 'boolean') {
    el = h('select', { name }, h('option', { value: '' }, '—'),
      h('option', { value: 'true', selected: value === true }, 'yes'),
      h('option', { value: 'false', selected: value === false }, 'no'));
    read = () => (el.value === '' ? undefined : el.value === 'true');
  } else if (type === 'number' || type === 'integer') {
    el = h('input', { name, type: 'number', step: type === 'integer' ? '1' : 'any', value: value ?? '' });
    read = () => (el.value === '' ? undefined : Number(el.value));
  } else if (type === 'object' || type === 'array') {
    el = h('textarea', { name, rows: 3, value: value === undefined || value === null ? '' : JSON.stringify(value, null, 1) });
    read = () => {
      if (el.value.trim() === '') return undefined;
      try { return JSON.parse(el.value); } catch { throw new Error(`${label(name)}: not valid JSON`); }
    };
  } else {
    el = h('input', { name, type: 'text', value: value ?? '', autocomplete: 'off' });
    read = () => (el.value === '' ? undefined : el.value);
  }
  return { el, read, name };
}

/// A form of every writable property of `inputSchema`, filled from `record`: one fieldset per
/// group (the rest under "Other"), or one grid when no groups are given.
export function editForm(inputSchema, record, groups = []) {
  const controls = [];
  const writable = properties(inputSchema)
    .filter(([n]) => (n !== 'id' && !n.startsWith('sys_')) || n === 'sys_locked' || n === 'sys_external_id');
  const byName = new Map(writable);
  const sets = groups.map(([title, names]) => [title, names.filter((n) => byName.has(n))]);
  const grouped = new Set(sets.flatMap(([, names]) => names));
  const rest = writable.map(([n]) => n).filter((n) => !grouped.has(n));
  if (rest.length) sets.push([groups.length ? 'Other' : null, rest]);
  const parts = sets.filter(([, names]) => names.length).map(([title, names]) => {
    const grid = h('div', { class: 'grid' });
    for (const name of names) {
      const c = control(name, byName.get(name), record?.[name]);
      controls.push(c);
      grid.append(labelled(label(name), c.el));
    }
    return title ? h('fieldset', null, h('legend', null, title), grid) : grid;
  });
  return { grid: h('div', null, parts), controls };
}

/// The fields the form holds: only those with a value.
export function readForm(controls) {
  const body = {};
  for (const c of controls) {
    const v = c.read();
    if (v !== undefined) body[c.name] = v;
  }
  return body;
}

/// The JSON Patch (RFC 6902) that turns `before` into the form's values: a field emptied is
/// removed, a changed one replaced, a new one added.
export function patchFrom(before, controls) {
  const ops = [];
  for (const c of controls) {
    const v = c.read();
    const had = before[c.name];
    const path = `/${c.name}`;
    if (v === undefined) {
      if (had !== undefined && had !== null) ops.push({ op: 'remove', path });
    } else if (JSON.stringify(v) !== JSON.stringify(had)) {
      ops.push({ op: had === undefined ? 'add' : 'replace', path, value: v });
    }
  }
  return ops;
}
