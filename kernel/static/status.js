// KernKoa task page: follow /status/<id> live (Server-Sent Events, else polling),
// draw the progress bar, the custom state's fields, the result or the error,
// and cancel with DELETE /status/<id>. Everything is written as text, never as HTML.
"use strict";

(function () {
  const FINAL = new Set(["SUCCESS", "FAILURE", "REVOKED"]);
  const POLL_MS = 1000;
  const root = document.getElementById("task");
  const statusUrl = root.dataset.statusUrl;
  const eventsUrl = root.dataset.eventsUrl;
  const $ = (id) => document.getElementById(id);
  let finished = false;
  let source = null;
  let pollTimer = null;
  // When the task started and ended (epoch seconds), as the index knew at load;
  // a start or an end seen later is taken at the moment this page sees it.
  const timing = $("started").dataset;
  let startedAt = JSON.parse(timing.started || "null");
  let finishedAt = JSON.parse(timing.finished || "null");
  let clock = null;

  function showTiming() {
    $("started").textContent = startedAt === null ? "–" : new Date(startedAt * 1000).toLocaleString();
    if (startedAt === null) { $("elapsed").textContent = "–"; return; }
    const end = finishedAt === null ? Date.now() / 1000 : finishedAt;
    $("elapsed").textContent = Math.max(0, end - startedAt).toFixed(0) + " s";
  }

  function updateTiming(status) {
    const now = Date.now() / 1000;
    if (startedAt === null && status !== "PENDING" && status !== "UNKNOWN"
        && status !== "UNAVAILABLE") startedAt = now;
    if (FINAL.has(status) || status === "UNKNOWN") {
      if (finishedAt === null && startedAt !== null) finishedAt = now;
      if (clock) { clearInterval(clock); clock = null; }
    } else if (!clock) {
      clock = setInterval(showTiming, 1000);
    }
    showTiming();
  }

  function percentOf(body) {
    if (body.status === "SUCCESS") return 100;
    const state = body.state;
    if (!state || typeof state !== "object") return null;
    if (typeof state.percent === "number") return state.percent;
    if (typeof state.current === "number" && typeof state.total === "number" && state.total > 0) {
      return (100 * state.current) / state.total;
    }
    return null;
  }

  function showFields(state) {
    const list = $("fields");
    list.replaceChildren();
    if (!state || typeof state !== "object") { $("fields-box").hidden = true; return; }
    for (const [key, value] of Object.entries(state)) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = key;
      dd.textContent = typeof value === "string" ? value : JSON.stringify(value);
      list.append(dt, dd);
    }
    $("fields-box").hidden = list.children.length === 0;
  }

  function render(body) {
    const code = body.code || 200;
    // 404: no such task; other errors (503) pass, and the next update shows the task again.
    const status = code === 404 ? "UNKNOWN" : code >= 400 ? "UNAVAILABLE"
      : String(body.status || "PENDING");
    const state = $("state");
    state.textContent = status;
    state.className = "state-name state-" + status;
    const bar = $("bar");
    let percent = percentOf(body);
    if (percent !== null) {
      percent = Math.max(0, Math.min(100, percent));
      bar.firstElementChild.style.width = percent + "%";
      bar.setAttribute("aria-valuenow", String(Math.round(percent)));
      $("progress-text").textContent = Math.round(percent) + " %";
    }
    bar.classList.toggle("done", status === "SUCCESS");
    bar.classList.toggle("failed", status === "FAILURE" || status === "REVOKED");
    // Known once a worker has taken the task: the request that started it.
    if (typeof body.request_id === "string") $("request-id").textContent = body.request_id;
    const message = body.state && typeof body.state === "object" ? body.state.message : null;
    $("message").textContent = message ? String(message) : "";
    showFields(body.state);
    if ("data" in body) {
      $("result-box").hidden = false;
      $("result").textContent = typeof body.data === "string"
        ? body.data : JSON.stringify(body.data, null, 2);
    }
    if (body.error) {
      $("error-box").hidden = false;
      const e = body.error;
      $("error").textContent = (e.type ? e.type + ": " : "") + (e.message || "");
    }
    updateTiming(status);
    if (code === 404 || FINAL.has(status)) finish();
  }

  function finish() {
    finished = true;
    $("cancel").disabled = true;
    $("transport").textContent = "finished";
    if (source) { source.close(); source = null; }
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
  }

  async function poll() {
    pollTimer = null;
    if (finished) return;
    try {
      const response = await fetch(statusUrl, { headers: { Accept: "application/json" } });
      const body = await response.json();
      render({ code: response.status, ...body });
    } catch (error) {
      $("transport").textContent = "status unreachable, retrying";
    }
    if (!finished) pollTimer = setTimeout(poll, POLL_MS);
  }

  function startPolling() {
    $("transport").textContent = "updates: polling";
    root.dataset.transport = "polling";
    if (!pollTimer && !finished) poll();
  }

  function startEvents() {
    if (!("EventSource" in window)) { startPolling(); return; }
    let opened = false;
    source = new EventSource(eventsUrl);
    source.addEventListener("open", () => {
      opened = true;
      root.dataset.transport = "events";
      $("transport").textContent = "updates: live";
    });
    source.addEventListener("status", (e) => render(JSON.parse(e.data)));
    source.addEventListener("end", () => finish());
    source.addEventListener("error", () => {
      // Before the first open the stream is not available at all: poll instead.
      // After it, EventSource reconnects by itself (the server caps a stream's life).
      if (!opened && source) { source.close(); source = null; startPolling(); }
    });
  }

  $("cancel").addEventListener("click", async () => {
    $("cancel").disabled = true;
    try {
      const response = await fetch(statusUrl, { method: "DELETE", headers: { Accept: "application/json" } });
      const body = await response.json();
      render({ code: response.status, ...body });
    } catch (error) {
      $("transport").textContent = "cancel failed: " + error;
      $("cancel").disabled = finished;
    }
  });

  const initial = JSON.parse(root.dataset.initial || "{}");
  showTiming();
  if (initial && initial.status) render(initial);
  if (!finished) startEvents();
})();
