// The one way the console talks to the server: the public API, with the key the user signed
// in with. The key lives in this tab's sessionStorage only (never in a URL or a cookie), so
// closing the tab signs out.

const KEY = 'registrar.key';
const TENANT = 'registrar.tenant';

export const session = {
  key: sessionStorage.getItem(KEY),
  who: null, // GET /whoami
  tenant: sessionStorage.getItem(TENANT),
};

export function signIn(key, who) {
  session.key = key;
  session.who = who;
  sessionStorage.setItem(KEY, key);
  if (who.tenant_id) setTenant(who.tenant_id);
}

export function signOut() {
  session.key = null;
  session.who = null;
  session.tenant = null;
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(TENANT);
}

export function setTenant(id) {
  session.tenant = id;
  if (id) sessionStorage.setItem(TENANT, id); else sessionStorage.removeItem(TENANT);
}

const RANK = { read: 1, write: 2, admin: 3 };
/// Whether the signed-in key has at least `role` on the current tenant.
export function can(role) {
  return !!session.who && RANK[session.who.role] >= RANK[role];
}
export const isOperator = () => session.who?.principal === 'operator';

/// An error answer of the API: its status and the envelope's code, message and details.
export class ApiError extends Error {
  constructor(status, body) {
    const error = body && typeof body === 'object' ? body.error ?? {} : {};
    super(error.message ?? (typeof body === 'string' && body ? body : `HTTP ${status}`));
    this.status = status;
    this.code = error.code ?? 'http_' + status;
    this.details = Array.isArray(error.details) ? error.details : [];
  }
}

/// The plain-words heading for an error code; the API's own message follows it.
const PLAIN = {
  version_conflict: 'Someone else changed this record since you opened it.',
  has_dependants: 'This cannot be deleted while other records depend on it.',
  offering_full: 'The course offering has no free seat.',
  duplicate_registration: 'The student is already registered for this offering.',
  missing_reference: 'A record this one points to does not exist.',
  record_locked: 'The record is locked; only an admin key may change it.',
  order_exists: 'The registration already has an order.',
  validation_failed: 'Some fields are not valid.',
  unauthorized: 'The key was not accepted.',
  forbidden: 'This key may not do that.',
  tenant_limit: 'The tenant has reached one of its limits.',
  rate_limited: 'Too many requests; wait a moment and try again.',
  not_found: 'Not found.',
};

export function describe(error) {
  if (!(error instanceof ApiError)) return { title: 'The server could not be reached.', lines: [String(error.message ?? error)] };
  const lines = [error.message];
  for (const d of error.details) lines.push(d.field ? `${d.field}: ${d.message ?? d.reason ?? ''}` : JSON.stringify(d));
  return { title: PLAIN[error.code] ?? `The request failed (${error.code}).`, lines };
}

/// Calls the API. `body` is sent as JSON unless it is a string or a Blob (then `type` names
/// its media type). Resolves to {data, etag, headers, status}; rejects with ApiError.
export async function api(method, path, { body, type, query, ifMatch, headers = {} } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (session.key) h.Authorization = `Bearer ${session.key}`;
  let payload = body;
  if (body !== undefined && typeof body !== 'string' && !(body instanceof Blob)) {
    payload = JSON.stringify(body);
    h['Content-Type'] = type ?? 'application/json';
  } else if (body !== undefined) {
    h['Content-Type'] = type ?? 'application/json';
  }
  if (ifMatch) h['If-Match'] = ifMatch;
  const response = await fetch(path + queryString(query), { method, headers: h, body: payload });
  const text = await response.text();
  let data = text;
  if ((response.headers.get('Content-Type') ?? '').includes('json') && text) {
    try { data = JSON.parse(text); } catch { /* left as text */ }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, etag: response.headers.get('ETag'), headers: response.headers, status: response.status };
}

export function queryString(query) {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    params.append(k, String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;

/// The API description, fetched once: enums and field types come from it, so the console
/// offers exactly what the server accepts.
let description = null;
export async function openapi() {
  if (!description) description = (await api('GET', '/openapi.json')).data;
  return description;
}
