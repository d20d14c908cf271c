// KernKoa docs page: send each "try it" form with fetch and show the answer on the page.
// The fields go as a form (urlencoded, or multipart with files), as JSON or as CBOR; the
// answer is asked for in JSON or in CBOR. Answers are shown as text (textContent), never
// parsed as HTML; a CBOR answer is decoded (cbor.js) and shown beside its raw bytes.
"use strict";

(function () {
  const QUERY_METHODS = new Set(["GET", "DELETE"]);
  const CBOR_TYPE = "application/cbor";
  // JSON (or CBOR) first: a _celery method then answers 202 with its task instead of
  // redirecting the fetch to the HTML status page.
  const ACCEPT = {
    json: "application/json, text/html;q=0.9, */*;q=0.5",
    cbor: "application/cbor, application/json;q=0.9, text/html;q=0.8, */*;q=0.5",
  };
  // The raw bytes shown of a CBOR answer, at most.
  const HEX_SHOWN = 4096;
  const { encode, decode, describe } = window.KernKoaCbor;

  function fieldsOf(form) {
    // [name, value] pairs: empty optional fields are left out so their default applies;
    // list fields split on commas into repeated keys (the binder takes every value).
    const pairs = [];
    let hasFile = false;
    for (const el of form.elements) {
      if (!el.name || el.name.startsWith("__")) continue;
      if (el.type === "file") {
        for (const file of el.files) { pairs.push([el.name, file]); hasFile = true; }
        continue;
      }
      if (el.value === "") continue;
      if (el.dataset.many === "yes") {
        for (const item of el.value.split(",")) pairs.push([el.name, item.trim()]);
      } else {
        pairs.push([el.name, el.value]);
      }
    }
    for (const [name, value] of extraLines(form)) pairs.push([name, value]);
    return { pairs, hasFile };
  }

  function extraLines(form) {
    // The "other fields" box: one name=value a line.
    const extra = form.elements.namedItem("__extra");
    const lines = [];
    if (!extra) return lines;
    for (const line of extra.value.split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) lines.push([line.slice(0, at).trim(), line.slice(at + 1)]);
    }
    return lines;
  }

  // ---- typed fields, for a JSON or CBOR body ----

  function kindsOf(schema) {
    // The JSON types a field's schema allows: its type(s) and those of its anyOf branches.
    const kinds = new Set([].concat(schema.type || []));
    for (const branch of schema.anyOf || []) for (const kind of kindsOf(branch)) kinds.add(kind);
    return kinds;
  }

  function typed(schema, text) {
    // A text field read as the JSON value its parameter takes (a JSON body is typed:
    // README, "Parameters"). Text no type takes is sent as it is: the 422 says why.
    for (const member of schema.enum || []) {
      if (member !== null && String(member) === text) return member;
    }
    const kinds = kindsOf(schema);
    const trimmed = text.trim();
    if (kinds.size === 0 || kinds.has("string")) return text;
    if (kinds.has("integer") && /^[+-]?\d+$/.test(trimmed)) {
      const big = BigInt(trimmed);
      return Number.isSafeInteger(Number(big)) ? Number(big) : big;
    }
    if (kinds.has("number") && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(trimmed)) {
      return Number(trimmed);
    }
    if (kinds.has("boolean") && /^(true|false)$/i.test(trimmed)) {
      return trimmed.toLowerCase() === "true";
    }
    if (kinds.has("null") && trimmed === "null") return null;
    return text;
  }

  function loose(text) {
    // An "other fields" value: JSON when it is JSON (3, true, [1, 2], "3"), else text.
    try { return JSON.parse(text); } catch (e) { return text; }
  }

  function dataOf(form) {
    // The fields as one map, each value typed by its parameter's schema.
    const data = new Map();
    for (const el of form.elements) {
      if (!el.name || el.name.startsWith("__") || el.value === "") continue;
      const schema = JSON.parse(el.dataset.schema || "{}");
      data.set(el.name, el.dataset.many === "yes"
        ? el.value.split(",").map((item) => typed(schema.items || {}, item.trim()))
        : typed(schema, el.value));
    }
    for (const [name, value] of extraLines(form)) data.set(name, loose(value));
    return data;
  }

  function jsonText(value) {
    // JSON.stringify, with BigInt (integers past 2**53) written as their digits.
    if (typeof value === "bigint") return value.toString();
    if (Array.isArray(value)) return "[" + value.map(jsonText).join(", ") + "]";
    if (value instanceof Map) {
      const members = [...value].map(([k, v]) => JSON.stringify(k) + ": " + jsonText(v));
      return "{" + members.join(", ") + "}";
    }
    if (value !== null && typeof value === "object") {
      return jsonText(new Map(Object.entries(value)));
    }
    return JSON.stringify(value);
  }

  // ---- the request ----

  function choice(form, name, fallback) {
    const el = form.elements.namedItem(name);
    return el ? el.value : fallback;
  }

  function requestFor(form) {
    const method = form.elements.namedItem("__method").value.toUpperCase();
    let url = form.getAttribute("action");
    const path = form.elements.namedItem("__path");
    if (path && path.value.trim()) {
      url += "/" + path.value.trim().split("/").filter(Boolean).map(encodeURIComponent).join("/");
    }
    const headers = { Accept: ACCEPT[choice(form, "__answer", "json")] };
    const init = { method, headers };
    const send = choice(form, "__send", "form");
    if (QUERY_METHODS.has(method)) {
      const query = new URLSearchParams();
      for (const [k, v] of fieldsOf(form).pairs) query.append(k, v);
      const text = query.toString();
      if (text) url += "?" + text;
    } else if (send === "json") {
      headers["Content-Type"] = "application/json";
      init.body = jsonText(dataOf(form));
    } else if (send === "cbor") {
      headers["Content-Type"] = CBOR_TYPE;
      init.body = encode(dataOf(form));
    } else {
      const { pairs, hasFile } = fieldsOf(form);
      const data = hasFile ? new FormData() : new URLSearchParams();
      for (const [k, v] of pairs) data.append(k, v);
      init.body = data;
    }
    return { url, init };
  }

  // ---- the answer ----

  function hexOf(bytes) {
    const shown = Array.from(bytes.subarray(0, HEX_SHOWN), (b) => b.toString(16).padStart(2, "0"));
    const more = bytes.length - HEX_SHOWN;
    return shown.join(" ") + (more > 0 ? " … (" + more + " more bytes)" : "");
  }

  async function read(response) {
    // { text, data, size, hex }: the answer as shown, its value when JSON or CBOR.
    const type = response.headers.get("Content-Type") || "";
    if (type.split(";")[0].trim() === CBOR_TYPE) {
      const bytes = new Uint8Array(await response.arrayBuffer());
      const answer = { size: bytes.length, hex: hexOf(bytes) };
      try {
        const value = decode(bytes);
        return { ...answer, text: describe(value), data: value };
      } catch (error) {
        return { ...answer, text: "Not decoded: " + error.message, data: null };
      }
    }
    let text = await response.text();
    let data = null;
    if (type.startsWith("application/json")) {
      try { data = JSON.parse(text); text = JSON.stringify(data, null, 2); } catch (e) { /* raw */ }
    }
    return { text, data, size: null, hex: null };
  }

  function statusUrlOf(data) {
    const url = data instanceof Map ? data.get("status_url")
      : data && typeof data === "object" ? data.status_url : undefined;
    return typeof url === "string" ? url : null;
  }

  async function show(form, response) {
    const box = form.querySelector(".result");
    const status = box.querySelector(".status");
    const raw = box.querySelector(".raw");
    const type = response.headers.get("Content-Type") || "";
    const answer = await read(response);
    box.hidden = false;
    box.className = "result " + (response.ok ? "ok" : "failed");
    status.textContent = response.status + " " + response.statusText + " · " + type
      + (answer.size === null ? "" : " · " + answer.size + " bytes");
    box.querySelector(".body").textContent = answer.text;
    raw.hidden = answer.hex === null;
    raw.querySelector(".hex").textContent = answer.hex || "";
    const statusUrl = statusUrlOf(answer.data);
    if (statusUrl) form.dataset.statusUrl = statusUrl;
    if (form.dataset.statusUrl && form.dataset.kind === "celery") {
      const link = document.createElement("a");
      link.href = form.dataset.statusUrl;
      link.className = "task-link";
      link.textContent = "Watch the task";
      const check = document.createElement("button");
      check.type = "button";
      check.className = "secondary task-status";
      check.textContent = "Check status";
      check.addEventListener("click", () => run(form, () => ({
        url: form.dataset.statusUrl,
        init: { headers: { Accept: ACCEPT[choice(form, "__answer", "json")] } },
      })));
      status.append(" · ", link, " · ", check);
    }
  }

  async function run(form, request) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { url, init } = request();
      await show(form, await fetch(url, init));
    } catch (error) {
      const box = form.querySelector(".result");
      box.hidden = false;
      box.className = "result failed";
      box.querySelector(".status").textContent = "request failed";
      box.querySelector(".body").textContent = String(error);
      box.querySelector(".raw").hidden = true;
    } finally {
      button.disabled = false;
    }
  }

  function isQuery(method) { return QUERY_METHODS.has(method.value.toUpperCase()); }

  function linkChoices(form) {
    // A GET or DELETE sends its fields in the query: choosing JSON or CBOR picks the
    // form's first method with a body, and choosing GET or DELETE goes back to a form.
    const send = form.elements.namedItem("__send");
    const method = form.elements.namedItem("__method");
    if (!send || !method.options) return;
    send.addEventListener("change", () => {
      const body = Array.from(method.options).find((option) => !isQuery(option));
      if (send.value !== "form" && isQuery(method) && body) method.value = body.value;
    });
    method.addEventListener("change", () => { if (isQuery(method)) send.value = "form"; });
  }

  for (const form of document.querySelectorAll("form.try")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      run(form, () => requestFor(form));
    });
    linkChoices(form);
  }
})();
