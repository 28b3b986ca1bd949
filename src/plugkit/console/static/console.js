// The plugkit console: calls the plugin's own API from the browser with the person's own credential.
// No framework, no build step; every value from the server reaches the page as text (textContent), never as HTML.
"use strict";
(() => {
  const config = JSON.parse(document.getElementById("console-config").textContent);
  const TOKEN_KEY = "plugkit-console-token";
  const OAUTH_KEY = "plugkit-console-oauth";
  const CLIENT_KEY = "plugkit-console-client";
  const REDIRECT_URI = location.origin + "/console/callback";
  const $ = (selector, root = document) => root.querySelector(selector);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  // --- calling the API ---------------------------------------------------------------------------------------------

  const hasRoute = (method, path) => config.routes.some((r) => r.method === method && r.path === path);
  const credential = () => sessionStorage.getItem(TOKEN_KEY);

  function authHeaders() {
    const token = credential();
    if (!token || config.auth.kind === "none") return {};
    return { Authorization: (config.auth.scheme === "basic" ? "Basic " : "Bearer ") + token };
  }

  function withQuery(path, query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query || {})) {
      if (value === undefined || value === null || value === "") continue;
      if (Array.isArray(value)) value.forEach((item) => params.append(key, item));
      else params.append(key, value);
    }
    const text = params.toString();
    return text ? `${path}?${text}` : path;
  }

  async function call(method, path, { query, json, body, headers } = {}) {
    const sent = { ...authHeaders(), Accept: "application/json", ...(headers || {}) };
    let payload = body;
    if (json !== undefined) {
      sent["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    }
    const started = performance.now();
    let response;
    try {
      response = await fetch(withQuery(path, query), { method, headers: sent, body: payload, credentials: "omit" });
    } catch (error) {
      return { status: 0, ms: performance.now() - started, data: null, text: String(error) };
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    return { status: response.status, ms: performance.now() - started, data, text };
  }

  function errorText(answer) {
    const data = answer.data || {};
    const detail = data.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail))
      return detail.map((e) => (e.loc ? e.loc.join(".") + ": " : "") + (e.msg || JSON.stringify(e))).join("; ");
    if (data.error) return data.error + (data.error_description ? ": " + data.error_description : "");
    return answer.text || (answer.status ? `HTTP ${answer.status}` : "no answer");
  }

  // --- signing in --------------------------------------------------------------------------------------------------

  const signinState = $("#signin-state");
  const signinError = $("#signin-error");

  async function renderSignIn() {
    const kind = config.auth.kind;
    const token = credential();
    $("#token-form").hidden = kind === "none" || kind === "oauth" || !!token;
    $("#oauth-signin").hidden = kind !== "oauth" || !!token;
    $("#signout").hidden = kind === "none" || !token;
    signinState.className = "";
    if (kind === "none") {
      signinState.textContent = "No sign-in needed (auth: none).";
      return;
    }
    if (!token) {
      signinState.textContent = `Not signed in (auth: ${kind}).`;
      return;
    }
    const answer = await call("GET", "/console/whoami");
    if (answer.status === 200) {
      const who = answer.data.user_id ? `as ${answer.data.user_id}` : "with the service token";
      signinState.textContent = `Signed in ${who} (${answer.data.method}).`;
      signinState.className = "ok";
      return;
    }
    sessionStorage.removeItem(TOKEN_KEY);
    signinError.textContent = `${answer.status}: ${errorText(answer)}`;
    await renderSignIn();
  }

  $("#token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = $("#token").value.trim();
    signinError.textContent = "";
    if (!value) {
      signinError.textContent = "Paste a token first.";
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, value);
    $("#token").value = "";
    await renderSignIn();
  });

  $("#signout").addEventListener("click", async () => {
    sessionStorage.removeItem(TOKEN_KEY);
    signinError.textContent = "";
    await renderSignIn();
  });

  function base64url(bytes) {
    let text = "";
    for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function oauthClientId() {
    if (config.auth.client_id) return config.auth.client_id;
    const saved = localStorage.getItem(CLIENT_KEY);
    if (saved) return saved;
    // No configured client: register one, public (PKCE, no secret), if the server offers RFC 7591 registration.
    const metadata = await call("GET", "/.well-known/oauth-authorization-server");
    const endpoint = metadata.status === 200 && metadata.data ? metadata.data.registration_endpoint : null;
    if (!endpoint)
      throw new Error(
        "The console has no OAuth client here: set PLUGKIT_CONSOLE_CLIENT_ID to a public client " +
          `(authorization code with PKCE, no secret) whose redirect URI is ${REDIRECT_URI}.`,
      );
    const registration = await call("POST", endpoint, {
      json: {
        client_name: `${config.name} console`,
        redirect_uris: [REDIRECT_URI],
        token_endpoint_auth_method: "none",
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
      },
    });
    if (registration.status !== 201 && registration.status !== 200)
      throw new Error(`Registering the console failed: ${registration.status}: ${errorText(registration)}`);
    localStorage.setItem(CLIENT_KEY, registration.data.client_id);
    return registration.data.client_id;
  }

  $("#oauth-signin").addEventListener("click", async () => {
    signinError.textContent = "";
    try {
      if (!window.crypto || !crypto.subtle) throw new Error("Signing in needs https (or localhost) for PKCE.");
      const clientId = await oauthClientId();
      const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
      const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
      const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
      sessionStorage.setItem(OAUTH_KEY, JSON.stringify({ verifier, state, clientId }));
      const target = new URL(config.auth.client_url, location.origin);
      target.search = new URLSearchParams({
        response_type: "code",
        client_id: clientId,
        redirect_uri: REDIRECT_URI,
        scope: config.auth.scope || "",
        state,
        code_challenge: challenge,
        code_challenge_method: "S256",
      }).toString();
      location.assign(target.toString());
    } catch (error) {
      signinError.textContent = error.message;
    }
  });

  async function finishOAuth() {
    const params = new URLSearchParams(location.search);
    const pending = JSON.parse(sessionStorage.getItem(OAUTH_KEY) || "null");
    sessionStorage.removeItem(OAUTH_KEY);
    history.replaceState(null, "", "/console");
    if (params.get("error")) {
      signinError.textContent = `${params.get("error")}: ${params.get("error_description") || "sign-in refused"}`;
      return;
    }
    if (!pending || params.get("state") !== pending.state) {
      signinError.textContent = "This sign-in was not started here (state differs); sign in again.";
      return;
    }
    const answer = await call("POST", config.auth.token_url, {
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: params.get("code") || "",
        redirect_uri: REDIRECT_URI,
        client_id: pending.clientId,
        code_verifier: pending.verifier,
      }),
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
    if (answer.status === 200 && answer.data && answer.data.access_token) {
      sessionStorage.setItem(TOKEN_KEY, answer.data.access_token);
    } else {
      signinError.textContent = `The token endpoint answered ${answer.status}: ${errorText(answer)}`;
    }
  }

  // --- tabs --------------------------------------------------------------------------------------------------------

  const tabs = Array.from(document.querySelectorAll("[role=tab]"));
  function select(tab) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
  }
  tabs.forEach((tab) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
      const shown = tabs.filter((t) => !t.hidden);
      const next = shown[(shown.indexOf(tab) + (event.key === "ArrowRight" ? 1 : shown.length - 1)) % shown.length];
      select(next);
      next.focus();
    });
  });

  // --- what the model sees -----------------------------------------------------------------------------------------

  let model = null;
  const formTexts = {};
  async function showForm(name) {
    for (const button of document.querySelectorAll(".form-pick"))
      button.setAttribute("aria-pressed", String(button.dataset.form === name));
    if (!(name in formTexts)) {
      const answer = await call("GET", `/console/forms/${name}`);
      formTexts[name] = answer.status === 200 ? answer.text : `${answer.status}: ${errorText(answer)}`;
    }
    $("#tool-form").textContent = formTexts[name];
  }

  async function loadModel() {
    const answer = await call("GET", "/console/model.json");
    if (answer.status !== 200) {
      $("#problems").append(el("li", { class: "error", text: `The model view failed: ${errorText(answer)}` }));
      return;
    }
    model = answer.data;
    const problems = $("#problems");
    if (!model.problems.length) problems.append(el("li", { class: "ok", text: "None: a host would accept it." }));
    for (const p of model.problems)
      problems.append(el("li", { class: p.level }, el("strong", { text: `${p.level} ` }), el("code", { text: p.field }), ` ${p.message}`));
    $("#token-method").textContent = `Token counts: ${model.token_method}. description_for_model: ${model.description_tokens} tokens.`;
    for (const button of document.querySelectorAll(".form-pick")) {
      $("span", button).textContent = `(${model.forms[button.dataset.form].tokens} tokens)`;
      button.addEventListener("click", () => showForm(button.dataset.form));
    }
    await showForm("openai");
    const body = $("#tool-tokens tbody");
    for (const tool of model.tools)
      body.append(el("tr", {}, el("td", {}, el("code", { text: tool.name })), el("td", { text: tool.openai_tokens }), el("td", { text: tool.mcp_tokens })));
    $("#manifest").textContent = JSON.stringify(model.manifest, null, 2);
    renderOperations(model.operations);
  }

  // --- operation forms ---------------------------------------------------------------------------------------------

  function example(schema, depth = 0) {
    if (!schema || typeof schema !== "object" || depth > 4) return null;
    if ("example" in schema) return schema.example;
    if ("default" in schema) return schema.default;
    if (schema.enum) return schema.enum[0];
    for (const key of ["anyOf", "oneOf"])
      if (Array.isArray(schema[key])) return example(schema[key].find((s) => s.type !== "null") || schema[key][0], depth);
    const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
    if (type === "object" || schema.properties) {
      const out = {};
      const required = schema.required || Object.keys(schema.properties || {});
      for (const name of required) out[name] = example((schema.properties || {})[name], depth + 1);
      return out;
    }
    if (type === "array") return [example(schema.items, depth + 1)].filter((x) => x !== null);
    if (type === "integer" || type === "number") return 0;
    if (type === "boolean") return false;
    if (type === "string") return "";
    return null;
  }

  function parameterInput(op, parameter) {
    const schema = parameter.schema || {};
    const id = `${op.operation_id}-${parameter.location}-${parameter.name}`.replace(/[^A-Za-z0-9_-]/g, "_");
    const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
    let input;
    if (schema.enum) {
      input = el("select", { id }, el("option", { value: "", text: "" }), ...schema.enum.map((v) => el("option", { text: v })));
    } else if (type === "boolean") {
      input = el("select", { id }, el("option", { value: "", text: "" }), el("option", { text: "true" }), el("option", { text: "false" }));
    } else {
      const numeric = type === "integer" || type === "number";
      input = el("input", {
        id,
        type: numeric ? "number" : "text",
        step: numeric ? "any" : null,
        placeholder: type === "array" ? "comma-separated" : schema.default !== undefined ? String(schema.default) : null,
        required: parameter.required,
      });
    }
    input.dataset.name = parameter.name;
    input.dataset.location = parameter.location;
    input.dataset.array = String(type === "array");
    const label = el("label", { for: id }, el("code", { text: parameter.name }), ` (${parameter.location}${parameter.required ? ", required" : ""})`);
    if (schema.description) label.title = schema.description;
    return [label, input];
  }

  function renderOperations(ops) {
    const host = $("#operations");
    for (const op of ops) {
      const form = el("form", { class: "grid", "data-operation": op.operation_id });
      for (const parameter of op.parameters) form.append(...parameterInput(op, parameter));
      let bodyField = null;
      if (op.body_schema) {
        const id = `${op.operation_id}-body`;
        if (op.body_media_type === "application/json") {
          bodyField = el("textarea", { id, rows: 6, spellcheck: "false" });
          bodyField.value = JSON.stringify(example(op.body_schema), null, 2);
        } else {
          bodyField = el("input", { id, type: "file" });
        }
        form.append(el("label", { for: id, text: `body (${op.body_media_type}${op.body_required ? ", required" : ""})` }), bodyField);
      }
      const output = el("div", { class: "answer", "aria-live": "polite" });
      form.append(el("span"), el("button", { type: "submit", text: op.read_only ? "Call" : "Call (changes data)" }));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        output.replaceChildren(el("p", { class: "note", text: "Calling…" }));
        output.replaceChildren(...renderAnswer(await callOperation(op, form, bodyField)));
      });
      host.append(
        el(
          "details",
          { class: "op" },
          el("summary", {}, el("span", { class: `method ${op.method}`, text: op.method }), el("code", { text: op.path }), el("span", { text: op.title || op.operation_id })),
          el("p", { class: "note", text: op.doc }),
          form,
          output,
        ),
      );
    }
  }

  async function callOperation(op, form, bodyField) {
    let path = op.path;
    const query = {};
    const headers = {};
    for (const input of form.querySelectorAll("[data-name]")) {
      const raw = input.value.trim();
      if (raw === "") continue;
      const value = input.dataset.array === "true" ? raw.split(",").map((s) => s.trim()).filter(Boolean) : raw;
      if (input.dataset.location === "path") path = path.replace(`{${input.dataset.name}}`, encodeURIComponent(raw));
      else if (input.dataset.location === "query") query[input.dataset.name] = value;
      else if (input.dataset.location === "header") headers[input.dataset.name] = raw;
    }
    if (!bodyField) return call(op.method, path, { query, headers });
    if (bodyField.type === "file") {
      const data = new FormData();
      if (bodyField.files[0]) data.append("file", bodyField.files[0]);
      return call(op.method, path, { query, headers, body: data });
    }
    let json;
    try {
      json = bodyField.value.trim() ? JSON.parse(bodyField.value) : undefined;
    } catch (error) {
      return { status: 0, ms: 0, data: null, text: `The body is not valid JSON: ${error.message}` };
    }
    return call(op.method, path, { query, headers, json });
  }

  // An answer that is a list of objects (or an object holding one, like {data: [...]}) is also shown as a table.
  function rowsOf(data) {
    const isRows = (value) => Array.isArray(value) && value.length > 0 && value.every((row) => row && typeof row === "object" && !Array.isArray(row));
    if (isRows(data)) return data;
    if (data && typeof data === "object") {
      const lists = Object.values(data).filter(isRows);
      if (lists.length === 1) return lists[0];
    }
    return null;
  }

  function cell(value) {
    if (value === null || value === undefined) return "";
    if (typeof value !== "object") return String(value);
    if (Array.isArray(value)) return value.map(cell).join(", ");
    if (value.full_name || value.name) return String(value.full_name || value.name);
    if (value.first_name || value.last_name) return `${value.first_name || ""} ${value.last_name || ""}`.trim();
    if ("id" in value) return `#${value.id}`;
    const text = JSON.stringify(value);
    return text.length > 80 ? text.slice(0, 79) + "…" : text;
  }

  function table(rows) {
    const columns = [];
    for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
    return el(
      "table",
      { class: "answer-table" },
      el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { scope: "col", text: c })))),
      el("tbody", {}, ...rows.map((row) => el("tr", {}, ...columns.map((c) => el("td", { text: cell(row[c]) }))))),
    );
  }

  function renderAnswer(answer) {
    const ok = answer.status >= 200 && answer.status < 300;
    const parts = [
      el("p", { class: `answer-meta ${ok ? "ok" : "error"}`, text: `${answer.status || "no answer"} · ${Math.round(answer.ms)} ms` }),
    ];
    if (!ok) parts.push(el("p", { class: "error answer-error", role: "alert", text: errorText(answer) }));
    const rows = ok ? rowsOf(answer.data) : null;
    if (rows) parts.push(table(rows));
    parts.push(el("pre", { tabindex: 0, text: answer.data !== null ? JSON.stringify(answer.data, null, 2) : answer.text }));
    return parts;
  }

  // --- documents workbench (the retrieval plugin's API contract) ----------------------------------------------------

  const docs = {
    listing: hasRoute("GET", "/documents"),
    chunks: hasRoute("GET", "/documents/{document_id}"),
    delete: hasRoute("DELETE", "/delete"),
    known: new Map(), // documents uploaded in this session, for an API without a listing
    generation: 0, // the newest listing request: older answers are dropped
    after: null,
  };

  function uploadFile(file) {
    const bar = el("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
    const result = el("span", { class: "result" });
    const item = el("li", { class: "upload" }, el("span", { class: "name", text: file.name }), bar, result);
    $("#uploads").append(item);
    const request = new XMLHttpRequest();
    request.open("POST", "/upsert-file");
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    request.upload.addEventListener("progress", (event) => {
      item.dataset.progressEvents = String(Number(item.dataset.progressEvents || 0) + 1);
      if (event.lengthComputable) bar.value = Math.round((100 * event.loaded) / event.total);
    });
    request.addEventListener("load", async () => {
      bar.value = 100;
      let data = null;
      try {
        data = JSON.parse(request.responseText);
      } catch {
        data = null;
      }
      const answer = { status: request.status, data, text: request.responseText };
      if (request.status !== 200 || !data || !Array.isArray(data.ids)) {
        item.classList.add("failed");
        result.className = "result error";
        result.textContent = `${request.status}: ${errorText(answer)}`;
        return;
      }
      const id = data.ids[0];
      let count = "?";
      if (docs.chunks) {
        const chunks = await call("GET", `/documents/${encodeURIComponent(id)}`);
        if (chunks.status === 200) count = chunks.data.chunks.length;
      }
      docs.known.set(id, { id, chunk_count: count, metadata: { source_id: file.name } });
      item.classList.add("done");
      result.className = "result ok";
      result.textContent = `${count} chunk${count === 1 ? "" : "s"} made · document ${id}`;
      await listDocuments(true);
    });
    request.addEventListener("error", () => {
      result.className = "result error";
      result.textContent = "The upload failed (network error).";
    });
    const form = new FormData();
    form.append("file", file);
    request.send(form);
  }

  function parseFilter(text) {
    if (!text.trim()) return undefined;
    return JSON.parse(text); // raises with the position of the mistake
  }

  function docRow(doc) {
    const open = el("button", { type: "button", text: doc.id, class: "doc-open" });
    open.addEventListener("click", () => showChunks(doc.id));
    const actions = el("td");
    if (docs.delete) {
      const remove = el("button", { type: "button", class: "danger doc-delete", text: "Delete", "aria-label": `Delete ${doc.id}` });
      remove.addEventListener("click", () => deleteDocument(doc.id));
      actions.append(remove);
    }
    const meta = Object.entries(doc.metadata || {}).filter(([, v]) => v !== null && v !== undefined);
    return el("tr", { "data-id": doc.id }, el("td", {}, open), el("td", { text: doc.chunk_count }), el("td", { text: meta.map(([k, v]) => `${k}: ${cell(v)}`).join(" · ") }), actions);
  }

  async function listDocuments(reset) {
    const body = $("#documents tbody");
    const note = $("#doc-note");
    // Uploads finishing together each ask for a fresh list: only the newest request's answer is shown, and a fresh
    // list replaces the rows in one step, so no row is shown twice.
    const generation = ++docs.generation;
    if (reset) docs.after = null;
    note.className = "note";
    if (!docs.listing) {
      note.textContent = "This API has no document listing (GET /documents): the documents uploaded in this session are shown.";
      body.replaceChildren(...Array.from(docs.known.values()).map(docRow));
      return;
    }
    let filter;
    try {
      filter = parseFilter($("#doc-filter-json").value);
    } catch (error) {
      note.className = "error";
      note.textContent = `The filter is not valid JSON: ${error.message}`;
      return;
    }
    const answer = await call("GET", "/documents", { query: { limit: 20, after: docs.after, filter: filter && JSON.stringify(filter) } });
    if (generation !== docs.generation) return;
    if (answer.status !== 200) {
      note.className = "error";
      note.textContent = `${answer.status}: ${errorText(answer)}`;
      return;
    }
    note.textContent = "";
    const rows = answer.data.documents.map(docRow);
    if (reset) body.replaceChildren(...rows);
    else body.append(...rows);
    docs.after = answer.data.next || null;
    $("#doc-more").hidden = !docs.after;
    if (!body.children.length) note.textContent = "No documents.";
  }

  async function showChunks(id) {
    const host = $("#chunks");
    const answer = await call("GET", `/documents/${encodeURIComponent(id)}`);
    if (answer.status !== 200) {
      host.replaceChildren(el("p", { class: "error", text: `${answer.status}: ${errorText(answer)}` }));
      return;
    }
    host.replaceChildren(
      el("h3", { text: `Chunks of ${id}` }),
      el("ol", {}, ...answer.data.chunks.map((c) => el("li", {}, el("code", { text: c.id }), el("div", { class: "chunk", text: c.text })))),
    );
  }

  async function deleteDocument(id) {
    if (!window.confirm(`Delete the document ${id} and all its chunks? This cannot be undone.`)) return;
    const answer = await call("DELETE", "/delete", { json: { ids: [id] } });
    const note = $("#doc-note");
    if (answer.status !== 200) {
      note.className = "error";
      note.textContent = `Delete failed: ${answer.status}: ${errorText(answer)}`;
      return;
    }
    docs.known.delete(id);
    note.className = "note ok";
    note.textContent = `Deleted ${id}.`;
    const row = $(`#documents tr[data-id="${CSS.escape(id)}"]`);
    if (row) row.remove();
  }

  function highlighted(text, query) {
    const terms = query.toLowerCase().match(/[\p{L}\p{N}]{2,}/gu) || [];
    const node = el("div", { class: "chunk" });
    if (!terms.length) {
      node.textContent = text;
      return node;
    }
    const pattern = new RegExp(`(${terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`, "giu");
    text.split(pattern).forEach((part, i) => node.append(i % 2 ? el("mark", { text: part }) : part));
    return node;
  }

  async function search(event) {
    event.preventDefault();
    const status = $("#search-status");
    const list = $("#results");
    list.replaceChildren();
    const query = $("#q").value;
    const mode = $("#mode").value;
    const topK = Number($("#top-k").value) || 5;
    const thresholdText = $("#threshold").value.trim();
    let filter;
    try {
      filter = parseFilter($("#filter").value);
    } catch (error) {
      status.className = "error";
      status.textContent = `The filter is not valid JSON: ${error.message}`;
      return;
    }
    const ask = (m) => call("POST", "/query", { json: { queries: [{ query, top_k: topK, mode: m, filter }] } });
    status.className = "";
    status.textContent = "Searching…";
    // Hybrid fuses a dense and a keyword ranking: ask for both too, so each result shows where each put it.
    const [main, dense, keyword] = await Promise.all([ask(mode), mode === "hybrid" ? ask("dense") : null, mode === "hybrid" ? ask("keyword") : null]);
    if (main.status !== 200) {
      status.className = "error";
      status.textContent = `${main.status}: ${errorText(main)}`;
      return;
    }
    const ranks = (answer) => {
      const out = new Map();
      if (answer && answer.status === 200) answer.data.results[0].results.forEach((r, i) => out.set(r.id, i + 1));
      return out;
    };
    const denseRanks = ranks(dense);
    const keywordRanks = ranks(keyword);
    let results = main.data.results[0].results;
    const threshold = thresholdText === "" ? null : Number(thresholdText);
    const before = results.length;
    if (threshold !== null) results = results.filter((r) => r.score >= threshold);
    const top = Math.max(...results.map((r) => r.score), 1e-9);
    status.textContent = `${results.length} result${results.length === 1 ? "" : "s"} · ${Math.round(main.ms)} ms` + (threshold !== null ? ` (${before - results.length} under the threshold)` : "");
    for (const r of results) {
      const bars = el("div", { class: "bars" });
      const bar = (label, fraction, kind, text) =>
        bars.append(el("span", { text: label }), el("span", {}, el("span", { class: `bar ${kind}`, style: null, "data-w": fraction })), el("span", { text }));
      bar(`${mode} score`, r.score / top, "", r.score.toFixed(4));
      if (mode === "hybrid") {
        const d = denseRanks.get(r.id);
        const k = keywordRanks.get(r.id);
        bar("dense rank", d ? 1 / d : 0, "dense", d ? `#${d}` : `not in top ${topK}`);
        bar("keyword rank", k ? 1 / k : 0, "keyword", k ? `#${k}` : `not in top ${topK}`);
      }
      // Widths set through the CSSOM: a style attribute would need 'unsafe-inline' in the policy.
      bars.querySelectorAll(".bar").forEach((b) => (b.style.width = `${Math.max(0, Math.min(1, Number(b.dataset.w))) * 100}%`));
      const meta = r.metadata || {};
      list.append(
        el("li", { class: "result", "data-id": r.id }, el("strong", {}, el("code", { text: r.id })), meta.source_id ? el("span", { class: "note", text: ` ${meta.source_id}` }) : null, bars, highlighted(r.text, query)),
      );
    }
  }

  function setUpDocuments() {
    if (!(hasRoute("POST", "/upsert-file") && hasRoute("POST", "/query"))) return;
    $("#tab-documents").hidden = false;
    const zone = $("#dropzone");
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      Array.from(event.dataTransfer.files).forEach(uploadFile);
    });
    $("#files").addEventListener("change", (event) => {
      Array.from(event.target.files).forEach(uploadFile);
      event.target.value = "";
    });
    $("#doc-filter").addEventListener("submit", (event) => {
      event.preventDefault();
      listDocuments(true);
    });
    $("#doc-more").addEventListener("click", () => listDocuments(false));
    $("#search").addEventListener("submit", search);
    if (config.auth.kind === "none" || credential()) listDocuments(true);
  }

  async function start() {
    select(tabs[0]);
    if (location.pathname === "/console/callback") await finishOAuth();
    await renderSignIn();
    setUpDocuments();
    await loadModel();
    document.body.dataset.ready = "true";
  }
  start();
})();
