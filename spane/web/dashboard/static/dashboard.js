// Spane dashboard: live updates over server-sent events, controls over the JSON API.
"use strict";

const ACTIVE = ["running", "paused"];
const VALUE_CAP = 65536;

function $(selector, root = document) { return root.querySelector(selector); }
function $$(selector, root = document) { return Array.from(root.querySelectorAll(selector)); }
function json(id) { const el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; }

async function api(method, path) {
  const response = await fetch("/api/v1" + path, { method, credentials: "same-origin" });
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body && body.message ? body.message : response.statusText);
  return body;
}

function when(epoch) {
  return epoch == null ? "" : new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19);
}

function took(start, end) {
  if (start == null || end == null) return "";
  const seconds = Math.max(0, end - start);
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
}

function badge(status) {
  const span = document.createElement("span");
  span.className = `badge status-${status}`;
  span.dataset.status = status;
  span.textContent = status;
  return span;
}

function say(text, failed = false) {
  const box = $("#control-message");
  if (!box) { if (failed) alert(text); return; }
  box.textContent = text;
  box.className = failed ? "failed" : "";
}

// -- executions list ---------------------------------------------------------------------

function executionRow(row) {
  const tr = document.createElement("tr");
  tr.dataset.id = row.id;
  const cells = [0, 1, 2, 3, 4, 5].map(() => document.createElement("td"));
  const link = document.createElement("a");
  link.className = "mono";
  link.href = `/ui/executions/${row.id}`;
  link.textContent = row.id.slice(0, 8);
  cells[0].append(link);
  const wf = document.createElement("a");
  wf.href = `/ui/workflows/${encodeURIComponent(row.workflow_id)}?version=${row.version}`;
  wf.textContent = row.workflow_id;
  const version = document.createElement("span");
  version.className = "dim";
  version.textContent = ` v${row.version}`;
  cells[1].append(wf, version);
  cells[2].textContent = row.tenant;
  cells[3].className = "status";
  cells[4].textContent = when(row.created_at);
  cells[5].className = "took";
  tr.append(...cells);
  return tr;
}

function followList(url) {
  const body = $("#executions tbody");
  const source = new EventSource(url);
  source.addEventListener("execution", (event) => {
    const row = JSON.parse(event.data);
    let tr = body.querySelector(`tr[data-id="${row.id}"]`);
    if (!tr) {
      tr = executionRow(row);
      body.prepend(tr);
      const empty = $(".empty");
      if (empty) empty.remove();
    }
    $(".status", tr).replaceChildren(badge(row.status));
    $(".took", tr).textContent = took(row.created_at, row.finished_at);
  });
}

// -- one execution -----------------------------------------------------------------------

function setupExecution(execution) {
  const nodes = json("nodes");
  let selected = null;
  let source = null;

  function setStatus(status) {
    execution.status = status;
    $("#execution-status").replaceChildren(badge(status));
    const active = ACTIVE.includes(status);
    const enable = { pause: status === "running", resume: status === "paused", cancel: active, replay: !active };
    for (const [action, on] of Object.entries(enable)) {
      const button = $(`button[data-action="${action}"]`);
      if (button) button.disabled = !on;
    }
  }

  function paintNode(id) {
    const node = nodes[id];
    const g = $(`g.node[data-node="${CSS.escape(id)}"]`);
    if (!g || !node) return;
    g.setAttribute("class", `node status-${node.status}`);
    g.dataset.status = node.status;
    $(".node-status", g).textContent = node.status + (node.attempts > 1 ? ` ×${node.attempts}` : "");
    if (selected === id) showNode(id);
  }

  function fact(dl, term, value) {
    if (value === "" || value == null) return;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    dl.append(dt, dd);
  }

  function showNode(id) {
    selected = id;
    const node = nodes[id];
    $$("g.node.selected").forEach((g) => g.classList.remove("selected"));
    const g = $(`g.node[data-node="${CSS.escape(id)}"]`);
    if (g) g.classList.add("selected");
    const panel = $("#node-panel");
    panel.replaceChildren();
    const title = document.createElement("h3");
    title.textContent = id;
    panel.append(title, badge(node ? node.status : "pending"));
    if (!node) return;
    const dl = document.createElement("dl");
    dl.className = "facts";
    fact(dl, "Type", node.type);
    fact(dl, "Attempts", String(node.attempts));
    fact(dl, "Queued", when(node.queued_at));
    fact(dl, "Waited", took(node.queued_at, node.started_at));
    fact(dl, "Started", when(node.started_at));
    fact(dl, "Ran", took(node.started_at, node.finished_at));
    fact(dl, "Finished", when(node.finished_at));
    if (node.child_id) {
      const link = document.createElement("a");
      link.href = `/ui/executions/${node.child_id}`;
      link.className = "mono";
      link.textContent = node.child_id.slice(0, 8);
      fact(dl, "Child", link);
    }
    panel.append(dl);
    if (node.error) {
      const pre = document.createElement("pre");
      pre.className = "error";
      pre.textContent = node.error;
      panel.append(pre);
    }
    const button = document.createElement("button");
    button.textContent = "Show output";
    button.addEventListener("click", () => showValue(`/executions/${execution.id}/nodes/${encodeURIComponent(id)}/output`, `output of ${id}`));
    panel.append(button);
  }

  async function showValue(path, label) {
    const box = $("#value");
    try {
      const value = await api("GET", `${path}?max_bytes=${VALUE_CAP}`);
      box.hidden = false;
      box.replaceChildren();
      const head = document.createElement("div");
      head.className = "value-head";
      head.textContent = `${label}: ${value.bytes} bytes${value.offloaded ? " (from the blob store)" : ""}` +
        (value.truncated ? `, first ${VALUE_CAP} shown` : "");
      const download = document.createElement("button");
      download.textContent = "Download";
      download.addEventListener("click", async () => {
        const full = await api("GET", `${path}?max_bytes=${Math.max(value.bytes, 1)}`);
        const link = document.createElement("a");
        link.href = URL.createObjectURL(new Blob([full.text], { type: "application/json" }));
        link.download = `${label.replace(/\W+/g, "-")}.json`;
        link.click();
      });
      head.append(" ", download);
      const text = document.createElement("code");
      let shown = value.text;
      if (!value.truncated) { try { shown = JSON.stringify(JSON.parse(value.text), null, 2); } catch (e) { /* keep raw */ } }
      text.textContent = shown;
      box.append(head, text);
    } catch (error) {
      say(error.message, true);
    }
  }

  function follow() {
    if (source) source.close();
    source = new EventSource(`/api/v1/streams/executions/${execution.id}`);
    source.addEventListener("node", (event) => {
      const node = JSON.parse(event.data);
      nodes[node.node_id] = node;
      paintNode(node.node_id);
    });
    source.addEventListener("execution", (event) => {
      const row = JSON.parse(event.data);
      setStatus(row.status);
      $("#took").textContent = took(row.created_at, row.finished_at);
      if (!ACTIVE.includes(row.status)) { source.close(); source = null; }
    });
  }

  async function control(button) {
    const action = button.dataset.action;
    try {
      if (action === "retry-dead-letter") {
        await api("POST", `/dead-letters/${button.dataset.letter}/retry`);
        button.remove();
        say("dead letter retried");
        setStatus("running");
        follow();
        return;
      }
      if (action === "cancel" && !confirm("Cancel this execution and its children?")) return;
      let path = `/executions/${execution.id}/${action}`;
      if (action === "replay") {
        const from = $("#replay-from").value;
        if (from) path += `?from_node=${encodeURIComponent(from)}`;
      }
      const result = await api("POST", path);
      if (action === "rerun") { window.location = `/ui/executions/${result.execution_id}`; return; }
      setStatus(result.status);
      say(`${action}: done`);
      if (ACTIVE.includes(result.status)) follow();
    } catch (error) {
      say(error.message, true);
    }
  }

  $$("g.node").forEach((g) => {
    g.addEventListener("click", () => showNode(g.dataset.node));
    g.addEventListener("keydown", (event) => { if (event.key === "Enter") showNode(g.dataset.node); });
  });
  $$(".controls button").forEach((button) => button.addEventListener("click", () => control(button)));
  $$("button[data-value]").forEach((button) => button.addEventListener("click", () =>
    showValue(`/executions/${execution.id}/values/${button.dataset.value}`, button.dataset.value)));
  Object.keys(nodes).forEach(paintNode);
  setStatus(execution.status);
  if (ACTIVE.includes(execution.status)) follow();
}

// -- dead letters ------------------------------------------------------------------------

// Run `act(button, row)` when a button matching `selector` is clicked; say why it failed.
function onClick(selector, act) {
  $$(selector).forEach((button) => {
    button.addEventListener("click", async () => {
      try {
        await act(button, button.closest("tr"));
      } catch (error) {
        say(error.message, true);
      }
    });
  });
}

function setupDeadLetters() {
  onClick('#dead-letters button[data-action="retry-dead-letter"]', async (button, row) => {
    const letter = await api("POST", `/dead-letters/${button.dataset.letter}/retry`);
    $(".status", row).replaceChildren(badge(letter.status));
    button.remove();
  });
}

// -- schedules and breakers --------------------------------------------------------------

function setupSchedules() {
  onClick("#schedules button[data-action]", async (button, row) => {
    const path = `/schedules/${encodeURIComponent(row.dataset.schedule)}`;
    const action = button.dataset.action;
    const result = await api("POST", `${path}/${action}`);
    if (action === "trigger") {
      if (result.execution_id == null) { say("skipped: the previous execution is still running"); return; }
      const link = document.createElement("a");
      link.className = "mono";
      link.href = `/ui/executions/${result.execution_id}`;
      link.textContent = result.execution_id.slice(0, 8);
      $(".last", row).replaceChildren(link);
      say(`started ${result.execution_id}`);
      return;
    }
    $(".status", row).replaceChildren(badge(result.paused ? "paused" : "active"));
    $(".next", row).textContent = result.paused ? "" : when(result.next_at);
    button.dataset.action = result.paused ? "resume" : "pause";
    button.textContent = result.paused ? "Resume" : "Pause";
    say(`${action}: done`);
  });
}

function setupBreakers() {
  onClick('#breakers button[data-action="reset"]', async (button, row) => {
    const breaker = await api("POST", `/breakers/${encodeURIComponent(row.dataset.breaker)}/reset`);
    $(".status", row).replaceChildren(badge(breaker.state));
    $(".failures", row).textContent = `${breaker.failures}/${breaker.fail_max}`;
    $(".closes", row).textContent = when(breaker.closes_at);
    say(`${breaker.name} is ${breaker.state}`);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const stream = json("stream");
  if (stream) followList(stream);
  const execution = json("execution");
  if (execution) setupExecution(execution);
  if ($("#dead-letters")) setupDeadLetters();
  if ($("#schedules")) setupSchedules();
  if ($("#breakers")) setupBreakers();
});
