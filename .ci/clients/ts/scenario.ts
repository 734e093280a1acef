// The README's "Try it" scenario through a TypeScript client: types generated from the live
// /openapi.json by openapi-typescript, requests made by openapi-fetch (.ci/clients/run.sh).
// It must type-check with `tsc --strict` (every call expressible, every answer read through its
// generated type), and at run time every answer must have exactly the expected status and
// validate against the schema its operation documents (Ajv, JSON Schema 2020-12): the run-time
// half of "parses into its typed model", which TypeScript types alone do not check.
//
// Usage: node scenario.js BASE_URL OPERATOR_KEY OPENAPI_JSON_FILE
import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";
import { Ajv2020 } from "ajv/dist/2020.js";
import { readFileSync } from "node:fs";

type Schemas = components["schemas"];
type PatchOperation = Schemas["JsonPatchOperation"];

const [base, operatorKey, specFile] = process.argv.slice(2);
const spec = JSON.parse(readFileSync(specFile, "utf8"));
// The whole description, so that every "#/components/…" reference resolves inside it.
const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
ajv.addSchema({ $id: "registrar", paths: spec.paths, components: spec.components });

function pointer(...segments: string[]): string {
  return segments
    .map((s) => encodeURIComponent(s.replace(/~/g, "~0").replace(/\//g, "~1")))
    .join("/");
}

function check(location: string, value: unknown): void {
  const validate = ajv.getSchema(`registrar#/${location}`);
  if (!validate) throw new Error(`no schema at ${location}`);
  if (!validate(value)) {
    throw new Error(`${decodeURIComponent(location)}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
  }
}

interface Answer<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

// The data of a successful call: exactly `status`, and valid against the documented schema.
async function ok<T>(call: Promise<Answer<T>>, path: string, method: string, status = 200): Promise<NonNullable<T>> {
  const { data, error, response } = await call;
  if (response.status !== status || data === undefined || data === null) {
    throw new Error(`${method.toUpperCase()} ${path}: expected ${status}, got ${response.status} ${JSON.stringify(error)}`);
  }
  check(pointer("paths", path, method, "responses", String(status), "content", "application/json", "schema"), data);
  return data as NonNullable<T>;
}

// An error answer: the one shared Error schema, with this status and code.
async function refused<T>(call: Promise<Answer<T>>, status: number, code: string): Promise<Schemas["Error"]> {
  const { data, error, response } = await call;
  if (response.status !== status || data !== undefined) {
    throw new Error(`expected ${status} ${code}, got ${response.status} ${JSON.stringify(data ?? error)}`);
  }
  check(pointer("components", "schemas", "Error"), error);
  const body = error as Schemas["Error"];
  if (body.error.code !== code) throw new Error(`expected ${code}, got ${body.error.code}`);
  return body;
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error("assertion failed: " + message);
}

const client = (key: string) => createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${key}` } });
const operator = client(operatorKey);
const tenantId = `ts-${Date.now()}`;

// A tenant and a write key for it.
await ok(operator.POST("/admin/tenants", { body: { id: tenantId } }), "/admin/tenants", "post", 201);
const made = await ok(
  operator.POST("/admin/tenants/{tenantId}/keys", { params: { path: { tenantId } }, body: { role: "write", name: "me" } }),
  "/admin/tenants/{tenantId}/keys", "post", 201);
const api = client(made.key!);
const t = { path: { tenantId } };

// The catalog: a course, an offering with 12 seats at 250, a contact, a registration process.
const course = await ok(api.POST("/courses/{tenantId}", { params: t, body: { name: "Workplace Safety", code: "SAF-101" } }),
  "/courses/{tenantId}", "post");
const offering = await ok(api.POST("/courseOfferings/{tenantId}", {
  params: t, body: { course_id: course.id, start_date: "2026-03-02T09:00:00Z", capacity: 12, price: 250 },
}), "/courseOfferings/{tenantId}", "post");
assert(offering.capacity === 12 && offering.price === 250, "the offering as sent");
const newContact = (first: string, last: string) => ok(api.POST("/contacts/{tenantId}", {
  params: t, body: { first_name: first, last_name: last, email_address: `${first.toLowerCase()}@example.org` },
}), "/contacts/{tenantId}", "post");
const contact = await newContact("Ada", "Lovelace");
assert(contact.name === "Ada Lovelace", "the contact's name is derived");
const process_ = await ok(api.POST("/registrationProcesses/{tenantId}", {
  params: t,
  body: { name: "Web sign-up", course_id: course.id, course_offering_id: offering.id, default_status: "registered" },
}), "/registrationProcesses/{tenantId}", "post");

// A registration from the process for the contact; a dry run first.
const generatePath = "/courseRegistrations/{tenantId}/generateRegistration/{processId}/{contactId}" as const;
const generate = (contactId: string, dryRun = false) => api.POST(generatePath, {
  params: { path: { tenantId, processId: process_.id, contactId }, query: { dryRun } },
});
const dry = await ok(generate(contact.id, true), generatePath, "post");
assert(dry.number === undefined, "a dry run has no number");
const registration = await ok(generate(contact.id), generatePath, "post");
assert(registration.status === "registered" && registration.student_id === contact.id, "the registration");
const itemPath = "/courseRegistrations/{tenantId}/{id}" as const;
const onItem = { params: { path: { tenantId, id: registration.id } } };
const got = await api.GET(itemPath, onItem);
assert(got.response.headers.get("etag") === '"1"', "ETag 1");
assert((await ok(Promise.resolve(got), itemPath, "get")).name === "Ada Lovelace", "the record");

// Its order; the order lookup; a payment recorded on the order.
const order = await ok(api.POST("/courseRegistrations/{tenantId}/generateOrder", { params: t, body: { id: registration.id } }),
  "/courseRegistrations/{tenantId}/generateOrder", "post");
assert(order.total === 250 && order.status === "awaiting payment", "the order");
const byOrderPath = "/courseRegistrations/{tenantId}/order/{order_id}" as const;
const byOrder = await ok(api.GET(byOrderPath, { params: { path: { tenantId, order_id: order.id } } }), byOrderPath, "get");
assert(byOrder.Count === 1 && byOrder.Items[0].id === registration.id, "the order lookup");
const orderPath = "/orders/{tenantId}/{id}" as const;
const patchOrder = (body: PatchOperation[]) => api.PATCH(orderPath, {
  params: { path: { tenantId, id: order.id } }, body, headers: { "Content-Type": "application/json-patch+json" },
});
const paid = await ok(patchOrder([
  { op: "replace", path: "/amount_paid", value: 250 },
  { op: "replace", path: "/status", value: "completed" },
]), orderPath, "patch");
assert(paid.balance_due === 0, "paid in full");

// A lookup with fields (a list), then a patch pinned to the current version.
const byStudentPath = "/courseRegistrations/{tenantId}/student/{student_id}" as const;
const byStudent = await ok(api.GET(byStudentPath, {
  params: { path: { tenantId, student_id: contact.id }, query: { fields: ["name", "status", "order_status"] } },
}), byStudentPath, "get");
assert(byStudent.Items[0].order_status === "completed" && byStudent.Items[0].order_id === undefined, "projected");
const etag = (await api.GET(itemPath, onItem)).response.headers.get("etag")!;
assert(etag === '"3"', `ETag 3, not ${etag}`);
const patch = (ifMatch: string, body: PatchOperation[]) => api.PATCH(itemPath, {
  params: { path: { tenantId, id: registration.id }, header: { "If-Match": ifMatch } }, body,
  headers: { "Content-Type": "application/json-patch+json" },
});
const patched = await ok(patch(etag, [
  { op: "test", path: "/sys_version", value: 3 },
  { op: "add", path: "/completion_percentage", value: 50 },
]), itemPath, "patch");
assert(patched.completion_percentage === 50 && patched.sys_version === 4, "patched");
await refused(patch(etag, [{ op: "add", path: "/completion_percentage", value: 60 }]), 409, "version_conflict");

// The confirmation mail, kept in the outbox.
const sent = await ok(api.POST("/courseRegistrations/{tenantId}/previewEmail", {
  params: t, body: { registration_id: registration.id, destination_email_address: "ada@example.org" },
}), "/courseRegistrations/{tenantId}/previewEmail", "post");
assert(sent.transport === "outbox", "kept in the outbox");
const outbox = await ok(api.GET("/emails/{tenantId}", { params: t }), "/emails/{tenantId}", "get");
assert(outbox.Count === 1 && outbox.Items[0].message_id === sent.message_id, "the outbox");

// More students, then the offering's registrations walked page by page (2 a page).
for (const first of ["Grace", "Alan", "Edsger", "Barbara"]) {
  await ok(generate((await newContact(first, "Example")).id), generatePath, "post");
}
const byOfferingPath = "/courseRegistrations/{tenantId}/courseOffering/{course_offering_id}" as const;
const seen: string[] = [];
let start: string | undefined;
let pages = 0;
for (;;) {
  const answer = await api.GET(byOfferingPath, {
    params: { path: { tenantId, course_offering_id: offering.id }, query: { limit: 2, exclusiveStartKey: start } },
  });
  const page = await ok(Promise.resolve(answer), byOfferingPath, "get");
  pages += 1;
  seen.push(...page.Items.map((r) => r.id));
  const header = answer.response.headers.get("x-last-evaluated-key");
  if (page.LastEvaluatedKey === undefined) {
    assert(header === null, "no next page, no header");
    break;
  }
  assert(header === page.LastEvaluatedKey, "the header and the body agree");
  assert(answer.response.headers.get("link")?.endsWith('rel="next"'), "a next link");
  start = page.LastEvaluatedKey;
}
assert(seen.length === 5 && new Set(seen).size === 5 && pages === 3, `walked ${seen} in ${pages}`);

// Search: every registered registration of the course, two fields each, walked likewise.
const searchPath = "/courseRegistrations/{tenantId}/search" as const;
type SearchPage = paths[typeof searchPath]["post"]["responses"][200]["content"]["application/json"];
const found: Schemas["CourseRegistration"][] = [];
start = undefined;
for (;;) {
  const page: SearchPage = await ok(api.POST(searchPath, {
    params: { path: { tenantId }, query: { fieldsToReturn: ["name", "status"], limit: 3, exclusiveStartKey: start } },
    body: { course_id: [course.id], status: ["registered"] },
  }), searchPath, "post");
  found.push(...page.Items);
  if (page.LastEvaluatedKey === undefined) break;
  start = page.LastEvaluatedKey;
}
assert(JSON.stringify(found.map((r) => r.id).sort()) === JSON.stringify([...seen].sort()), "search finds them all");
assert(found.every((r) => r.student_id === undefined && r.status === "registered"), "projected");

// Batch: a patch and a delete, atomically.
const result = await ok(api.POST("/courseRegistrations/{tenantId}/batch", {
  params: t,
  body: {
    operations: [
      { op: "patch", id: seen[1], patch: [{ op: "add", path: "/notes", value: "batch" }] },
      { op: "delete", id: seen[2] },
    ],
    atomic: true,
  },
}), "/courseRegistrations/{tenantId}/batch", "post");
assert(result.success_count === 2 && result.results.every((r) => r.status === 200), "both applied");

// Delete: refused while the order is live; void the order first.
await refused(api.DELETE(itemPath, onItem), 409, "has_dependants");
await ok(patchOrder([{ op: "replace", path: "/status", value: "void" }]), orderPath, "patch");
const deleted = await ok(api.DELETE(itemPath, onItem), itemPath, "delete");
assert(deleted === registration.id, "the deleted id");
await refused(api.GET(itemPath, onItem), 404, "not_found");
console.log("typescript client: the README scenario passed");
