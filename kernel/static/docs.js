// KernKoa docs page: send each "try it" form with fetch and show the answer on the page.
// Answers are shown as text (textContent), never parsed as HTML.
"use strict";

(function () {
  const QUERY_METHODS = new Set(["GET", "DELETE"]);

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
    const extra = form.elements.namedItem("__extra");
    if (extra) {
      for (const line of extra.value.split("\n")) {
        const at = line.indexOf("=");
        if (at > 0) pairs.push([line.slice(0, at).trim(), line.slice(at + 1)]);
      }
    }
    return { pairs, hasFile };
  }

  function requestFor(form) {
    const method = form.elements.namedItem("__method").value.toUpperCase();
    const { pairs, hasFile } = fieldsOf(form);
    let url = form.getAttribute("action");
    const path = form.elements.namedItem("__path");
    if (path && path.value.trim()) {
      url += "/" + path.value.trim().split("/").filter(Boolean).map(encodeURIComponent).join("/");
    }
    // JSON first: a _celery method then answers 202 with its task instead of
    // redirecting the fetch to the HTML status page.
    const init = { method, headers: { Accept: "application/json, text/html;q=0.9, */*;q=0.5" } };
    if (QUERY_METHODS.has(method)) {
      const query = new URLSearchParams();
      for (const [k, v] of pairs) query.append(k, v);
      const text = query.toString();
      if (text) url += "?" + text;
    } else if (hasFile) {
      const data = new FormData();
      for (const [k, v] of pairs) data.append(k, v);
      init.body = data;
    } else {
      const data = new URLSearchParams();
      for (const [k, v] of pairs) data.append(k, v);
      init.body = data;
    }
    return { url, init };
  }

  async function show(form, response) {
    const box = form.querySelector(".result");
    const status = box.querySelector(".status");
    const body = box.querySelector(".body");
    const type = response.headers.get("Content-Type") || "";
    let text = await response.text();
    let data = null;
    if (type.startsWith("application/json")) {
      try { data = JSON.parse(text); text = JSON.stringify(data, null, 2); } catch (e) { /* raw */ }
    }
    box.hidden = false;
    box.className = "result " + (response.ok ? "ok" : "failed");
    status.textContent = response.status + " " + response.statusText + " · " + type;
    body.textContent = text;
    if (data && typeof data === "object" && typeof data.status_url === "string") {
      const link = document.createElement("a");
      link.href = data.status_url;
      link.className = "task-link";
      link.textContent = "Watch the task";
      status.append(" · ", link);
    }
  }

  async function submit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { url, init } = requestFor(form);
      await show(form, await fetch(url, init));
    } catch (error) {
      const box = form.querySelector(".result");
      box.hidden = false;
      box.className = "result failed";
      box.querySelector(".status").textContent = "request failed";
      box.querySelector(".body").textContent = String(error);
    } finally {
      button.disabled = false;
    }
  }

  for (const form of document.querySelectorAll("form.try")) {
    form.addEventListener("submit", submit);
  }
})();
