// Renders /openapi.json without any third-party code: the page must work offline.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value; else node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// JSON with every "$ref" turned into a link to the schema it names.
function schemaBlock(schema) {
  const pre = el("pre");
  const text = JSON.stringify(schema, null, 2);
  const pattern = /"#\/components\/(schemas|responses)\/([A-Za-z0-9_]+)"/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    pre.append(text.slice(last, match.index));
    pre.append(el("a", { href: "#" + match[1] + "-" + match[2], text: match[0] }));
    last = match.index + match[0].length;
  }
  pre.append(text.slice(last));
  return pre;
}

function parameterTable(parameters) {
  if (!parameters || parameters.length === 0) return null;
  const table = el("table", {}, el("tr", {},
    el("th", { text: "Name" }), el("th", { text: "In" }), el("th", { text: "Schema" }),
    el("th", { text: "Description" })));
  for (const p of parameters) {
    table.append(el("tr", {},
      el("td", { text: p.name + (p.required ? " *" : "") }), el("td", { text: p.in }),
      el("td", {}, el("code", { text: JSON.stringify(p.schema) })),
      el("td", { text: p.description || "" })));
  }
  return table;
}

function responseTable(responses) {
  const table = el("table", {}, el("tr", {}, el("th", { text: "Status" }), el("th", { text: "Answer" })));
  for (const [status, response] of Object.entries(responses)) {
    const cell = el("td");
    if (response.$ref) {
      const name = response.$ref.split("/").pop();
      cell.append(el("a", { href: "#responses-" + name, text: name }));
    } else {
      cell.append(response.description || "");
      const schema = response.content && response.content["application/json"].schema;
      if (schema) cell.append(schemaBlock(schema));
    }
    table.append(el("tr", {}, el("td", { text: status }), cell));
  }
  return table;
}

function operation(method, path, op) {
  const body = el("div", { class: "body" });
  body.append(el("p", { text: "operationId: " + op.operationId }));
  const params = parameterTable(op.parameters);
  if (params) body.append(el("h4", { text: "Parameters" }), params);
  if (op.requestBody) {
    body.append(el("h4", { text: "Request body" }),
      schemaBlock(op.requestBody.content["application/json"].schema));
  }
  body.append(el("h4", { text: "Responses" }), responseTable(op.responses));
  const details = el("details", { class: "op", "data-search": (method + " " + path + " " + (op.summary || "")).toLowerCase() },
    el("summary", {}, el("span", { class: "method " + method, text: method }),
      el("span", { class: "path", text: path }), el("span", { class: "summary", text: op.summary || "" })),
    body);
  return details;
}

function render(spec) {
  document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
  document.getElementById("description").textContent = spec.info.description;
  const byTag = new Map((spec.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["Other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(method, path, op));
    }
  }
  const container = document.getElementById("operations");
  for (const [tag, ops] of byTag) {
    container.append(el("h2", { text: tag }), ...ops);
  }
  const schemas = document.getElementById("schemas");
  for (const [kind, entries] of [["schemas", spec.components.schemas], ["responses", spec.components.responses]]) {
    for (const [name, schema] of Object.entries(entries)) {
      schemas.append(el("details", { class: "op", id: kind + "-" + name },
        el("summary", {}, el("span", { class: "path", text: name })),
        el("div", { class: "body" }, schemaBlock(schema))));
    }
  }
  document.getElementById("filter").addEventListener("input", (event) => {
    const needle = event.target.value.toLowerCase();
    for (const node of container.querySelectorAll("details.op")) {
      node.style.display = node.dataset.search.includes(needle) ? "" : "none";
    }
  });
}

fetch("/openapi.json")
  .then((response) => response.json())
  .then(render)
  .catch((error) => {
    document.getElementById("description").textContent = "Could not load /openapi.json: " + error;
  });
