// Building the page: elements are made with h(), which sets text as text (never as HTML), so
// no value from the API can inject markup. Helpers for labelled fields, alerts and dialogs.

let counter = 0;
export const nextId = (prefix = 'c') => `${prefix}-${++counter}`;

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value' || key === 'checked' || key === 'selected') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/// A control with its label (and an optional hint tied to it for screen readers).
export function labelled(label, control, hint) {
  if (!control.id) control.id = nextId('f');
  let small = null;
  if (hint) {
    small = h('small', { id: `${control.id}-hint` }, hint);
    control.setAttribute('aria-describedby', small.id);
  }
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, small);
}

/// Replaces the page's content and moves focus to it (so keyboard and screen-reader users
/// land on the new page).
export function show(...nodes) {
  const main = document.getElementById('main');
  main.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
  const heading = main.querySelector('h1');
  if (heading) document.title = `${heading.textContent} · registrar console`;
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

let statusTimer = null;
/// A short message in the live region (read out by screen readers).
export function notify(message) {
  const status = document.getElementById('status');
  status.replaceChildren(h('p', null, message));
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => status.replaceChildren(), 5000);
}

/// A list of problems as an alert.
export function alertBox(title, lines = []) {
  return h('div', { class: 'alert', role: 'alert' },
    h('strong', null, title),
    lines.length ? h('ul', null, lines.map((line) => h('li', null, line))) : null);
}

/// Asks a yes/no question in a modal dialog; resolves to the answer.
export function confirmDialog(question, yes = 'Yes', no = 'Cancel') {
  return new Promise((resolve) => {
    const dialog = h('dialog', { 'aria-labelledby': nextId('q') });
    const title = h('p', { id: dialog.getAttribute('aria-labelledby') }, question);
    const finish = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    dialog.append(title, h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'danger', onclick: () => finish(true) }, yes),
      h('button', { type: 'button', class: 'secondary', onclick: () => finish(false) }, no)));
    dialog.addEventListener('cancel', () => finish(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}

/// A sandboxed frame showing an HTML document (an email's rendered html part): no script
/// runs in it and it cannot reach the console's origin.
export function htmlPreview(html, title) {
  const url = URL.createObjectURL(new Blob([html], { type: 'text/html' }));
  const frame = h('iframe', { class: 'preview', sandbox: '', src: url, title });
  frame.addEventListener('load', () => URL.revokeObjectURL(url), { once: true });
  return frame;
}

export function formatValue(value) {
  if (value === null || value === undefined || value === '') return '—';
  if (Array.isArray(value)) return value.length ? value.map(formatValue).join(', ') : '—';
  if (typeof value === 'object') return JSON.stringify(value);
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return String(value);
}

/// Renders the current page again, header included (after a change the header shows, such as
/// a new tenant).
export function rerender() {
  window.dispatchEvent(new HashChangeEvent('hashchange'));
}
