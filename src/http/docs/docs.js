// Renders /openapi.json without any third-party code: the page must work offline.
// It assumes as little as it can about the document: a response may have no content, any
// media type (text/plain, text/html, text/csv), a $ref; a body may have several media types.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value; else node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

const REF = /"#\/components\/(schemas|responses)\/([A-Za-z0-9_.-]+)"/g;

// JSON with every "$ref" turned into a link to the component it names.
function schemaBlock(schema) {
  const pre = el("pre");
  const text = JSON.stringify(schema === undefined ? {} : schema, null, 2);
  let last = 0;
  for (const match of text.matchAll(REF)) {
    pre.append(text.slice(last, match.index));
    pre.append(el("a", { href: "#" + match[1] + "-" + match[2], text: match[0] }));
    last = match.index + match[0].length;
  }
  pre.append(text.slice(last));
  return pre;
}

// One block per media type: "application/json" and then its schema.
function contentBlocks(content) {
  const blocks = [];
  for (const [media, entry] of Object.entries(content || {})) {
    blocks.push(el("div", { class: "media", text: media }));
    blocks.push(schemaBlock((entry || {}).schema));
  }
  return blocks;
}

function parameterTable(parameters) {
  if (!parameters || parameters.length === 0) return null;
  const table = el("table", {}, el("tr", {},
    el("th", { text: "Name" }), el("th", { text: "In" }), el("th", { text: "Schema" }),
    el("th", { text: "Description" })));
  for (const p of parameters) {
    table.append(el("tr", {},
      el("td", { text: p.name + (p.required ? " *" : "") }), el("td", { text: p.in }),
      el("td", {}, el("code", { text: JSON.stringify(p.schema || {}) })),
      el("td", { text: p.description || "" })));
  }
  return table;
}

function headerList(headers) {
  const names = Object.entries(headers || {});
  if (names.length === 0) return null;
  const list = el("ul", { class: "headers" });
  for (const [name, header] of names) {
    list.append(el("li", {}, el("code", { text: name + (header.required ? " *" : "") }),
      " " + (header.description || "")));
  }
  return list;
}

function responseTable(responses) {
  const table = el("table", {}, el("tr", {}, el("th", { text: "Status" }), el("th", { text: "Answer" })));
  for (const [status, response] of Object.entries(responses || {})) {
    const cell = el("td");
    if (response.$ref) {
      const name = response.$ref.split("/").pop();
      cell.append(el("a", { href: "#responses-" + name, text: name }));
    } else {
      cell.append(el("div", { text: response.description || "" }));
      const headers = headerList(response.headers);
      if (headers) cell.append(el("div", { class: "media", text: "Headers" }), headers);
      cell.append(...contentBlocks(response.content));
    }
    table.append(el("tr", {}, el("td", { text: status }), cell));
  }
  return table;
}

function operation(method, path, op) {
  const body = el("div", { class: "body" });
  body.append(el("p", { text: "operationId: " + (op.operationId || "") }));
  if (op.description) body.append(el("p", { text: op.description }));
  const params = parameterTable(op.parameters);
  if (params) body.append(el("h4", { text: "Parameters" }), params);
  if (op.requestBody) {
    body.append(el("h4", { text: "Request body" + (op.requestBody.required ? "" : " (optional)") }),
      ...contentBlocks(op.requestBody.content));
  }
  body.append(el("h4", { text: "Responses" }), responseTable(op.responses));
  const search = [method, path, op.operationId || "", op.summary || "", (op.tags || []).join(" ")];
  return el("details", { class: "op", "data-search": search.join(" ").toLowerCase() },
    el("summary", {}, el("span", { class: "method " + method, text: method }),
      el("span", { class: "path", text: path }), el("span", { class: "summary", text: op.summary || "" })),
    body);
}

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

function render(spec) {
  document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
  document.getElementById("description").textContent = spec.info.description || "";
  const byTag = new Map((spec.tags || []).map((t) => [t.name, { tag: t, ops: [] }]));
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue; // path-level parameters, summary, …
      const tag = (op.tags || ["Other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, { tag: { name: tag }, ops: [] });
      byTag.get(tag).ops.push(operation(method, path, op));
    }
  }
  const container = document.getElementById("operations");
  for (const { tag, ops } of byTag.values()) {
    if (ops.length === 0) continue;
    container.append(el("h2", { text: tag.name }));
    if (tag.description) container.append(el("p", { class: "tag", text: tag.description }));
    container.append(...ops);
  }
  const schemas = document.getElementById("schemas");
  const components = spec.components || {};
  for (const kind of ["schemas", "responses"]) {
    for (const [name, schema] of Object.entries(components[kind] || {})) {
      schemas.append(el("details", { class: "op", id: kind + "-" + name, "data-search": name.toLowerCase() },
        el("summary", {}, el("span", { class: "path", text: name }),
          el("span", { class: "summary", text: kind === "responses" ? "response" : "schema" })),
        el("div", { class: "body" }, schemaBlock(schema))));
    }
  }
  // Filter operations and schemas alike. `/docs?filter=word` starts filtered (a link to a
  // few operations; the browser test uses it too).
  const filter = document.getElementById("filter");
  const apply = () => {
    const needle = filter.value.trim().toLowerCase();
    for (const node of document.querySelectorAll("details.op")) {
      node.style.display = node.dataset.search.includes(needle) ? "" : "none";
    }
  };
  filter.addEventListener("input", apply);
  filter.value = new URLSearchParams(location.search).get("filter") || "";
  apply();
  // A link to a component opens it.
  window.addEventListener("hashchange", openTarget);
  openTarget();
  document.body.setAttribute("data-rendered", "true");
}

function openTarget() {
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target && target.tagName === "DETAILS") target.open = true;
}

fetch("/openapi.json")
  .then((response) => {
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  })
  .then(render)
  .catch((error) => {
    const message = "Could not load /openapi.json: " + error;
    document.getElementById("description").textContent = message;
    document.getElementById("error").textContent = message;
    document.body.setAttribute("data-rendered", "error");
  });
