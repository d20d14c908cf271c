// KernKoa tasks page: draw the snapshot of /_kernkoa/tasks, then follow it live
// (Server-Sent Events, else polling its JSON form). Everything is written as text.
"use strict";

(function () {
  const POLL_MS = 2000;
  const root = document.getElementById("tasks");
  const $ = (id) => document.getElementById(id);

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) td.className = className;
    return td;
  }

  function rows(id, items, make) {
    $(id).replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      tr.append(...make(item));
      return tr;
    }));
  }

  function when(seconds) {
    return typeof seconds === "number" ? new Date(seconds * 1000).toLocaleTimeString() : "";
  }

  function progress(task) {
    const p = task.progress;
    if (task.state === "SUCCESS") return "100 %";
    if (!p) return "";
    const text = typeof p.percent === "number" ? Math.round(p.percent) + " %"
      : p.current !== undefined ? String(p.current) : "";
    return p.message ? text + " " + p.message : text;
  }

  function link(task) {
    const td = document.createElement("td");
    const a = document.createElement("a");
    a.href = root.dataset.statusBase + encodeURIComponent(task.id);
    a.textContent = task.id.slice(0, 12) + "…";
    td.append(a);
    return td;
  }

  function render(data) {
    const failed = data.code && data.code >= 400;
    $("error").hidden = !failed;
    if (failed) { $("error").textContent = data.message || "unavailable"; return; }
    rows("workers", data.workers, (w) => [cell(w.name), cell(w.queues.join(", ")), cell(w.held)]);
    rows("queues", Object.entries(data.queues), ([name, q]) =>
      [cell(name), cell(q.waiting), cell(q.workers)]);
    rows("counts", Object.entries(data.counts), ([route, states]) =>
      [cell(route), cell(Object.entries(states).map(([s, n]) => s + " " + n).join(", "))]);
    rows("recent", data.tasks, (task) => [
      cell(task.route), cell(task.state, "state-name state-" + task.state),
      cell(progress(task), "progress"), cell(when(task.started)),
      cell(task.duration === null ? "" : task.duration.toFixed(1) + " s"),
      cell(task.request_id), cell(task.identity), link(task)]);
    root.dataset.updated = String(Date.now());
  }

  function poll() {
    root.dataset.transport = "polling";
    $("transport").textContent = "polling";
    fetch(root.dataset.jsonUrl, { headers: { Accept: "application/json" } })
      .then((r) => r.json()).then(render).catch(() => {})
      .finally(() => setTimeout(poll, POLL_MS));
  }

  render(JSON.parse(root.dataset.initial));
  if (!window.EventSource) { poll(); return; }
  const source = new EventSource(root.dataset.eventsUrl);
  let opened = false;
  source.onopen = () => {
    opened = true;
    root.dataset.transport = "events";
    $("transport").textContent = "live";
  };
  source.addEventListener("tasks", (e) => render(JSON.parse(e.data)));
  source.onerror = () => {
    // Never opened: no stream here (a proxy refuses it); poll instead.
    if (!opened) { source.close(); poll(); }
  };
})();
