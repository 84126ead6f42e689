// The /web/ page: one OpenEnv session over ws, a form built from info (both beside
// the page: relative URLs, so the page works under a reverse proxy's path prefix).
// Plain browser modules, no build step; gym_openenv/server/web.py serves them.

import { $, clip, el, formatNumber, pretty } from "./dom.js";
import { ActionForm } from "./form.js";
import { Session } from "./session.js";

const IMAGE_PREFIX = "data:image/png;base64,";
const STEP_LOG_LENGTH = 200; // steps of the current episode kept in the list

const page = {
  session: null,
  form: null,
  busy: false,
  episodes: [], // {steps, return, end}
};

async function main() {
  page.session = new Session({
    onPartial: (data) => renderObservation(data),
    onClose: (event) => setStatus(`not connected (code ${event.code}); the next Reset or Step opens a new session`, "idle"),
    onUnexpected: (message) => (message.type === "error" ? showError(message.data) : null),
  });
  let response;
  try {
    response = await fetch(new URL("info", document.baseURI), { credentials: "same-origin" });
  } catch (error) {
    setStatus("server unreachable", "bad");
    showError({ message: String(error) });
    return;
  }
  if (!response.ok) {
    setStatus(`HTTP ${response.status}`, "bad");
    showError({ code: `HTTP ${response.status}`, message: await response.text() });
    return;
  }
  const info = await response.json();
  renderHeader(info);
  page.form = new ActionForm($("#action-fields"), info, { onListTools: () => act(() => step({ type: "list_tools" }, 1)) });
  $("#reset-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act(reset);
  });
  $("#action-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => step(page.form.read(), repeatCount()));
  });
  document.addEventListener("keydown", stepOnDigit);
  setStatus("ready: press Reset", "idle");
}

// --- header, spaces --------------------------------------------------------------

function renderHeader(info) {
  const meta = info.metadata;
  document.title = `${meta.name} · gym_openenv`;
  $("#env-name").textContent = meta.name;
  const description = $("#env-description");
  description.append(meta.description || "");
  if (meta.version) description.append(" ", el("span", { class: "muted" }, `v${meta.version}`));
  if (meta.documentation_url) description.append(" ", el("a", { href: meta.documentation_url, target: "_blank", rel: "noopener" }, "docs"));
  $("#metadata").textContent = pretty(meta);

  const spaces = $("#spaces");
  for (const [kind, model] of Object.entries(info.spaces)) {
    spaces.append(el("dt", {}, kind), el("dd", {}, el("code", {}, model.space ?? "(no space: JSON only)")));
    const fields = Object.entries(model.fields);
    if (fields.length > 1) {
      const list = el("ul");
      for (const [name, space] of fields) list.append(el("li", {}, el("code", {}, name), " ", space));
      spaces.lastChild.append(list);
    }
    if (model.info_fields.length) spaces.lastChild.append(el("div", { class: "muted" }, "info: " + model.info_fields.join(", ")));
  }
  const { max_sessions: maxSessions, idle_timeout: idle } = info.limits;
  spaces.append(
    el("dt", {}, "session"),
    el("dd", { class: "muted" }, `one of at most ${maxSessions}; ${idle ? `closed after ${idle} s idle` : "never closed for idling"}`),
  );
}

// --- reset and step ------------------------------------------------------------------

// Run one operation (reset, steps) with the buttons disabled and its errors shown.
async function act(operation) {
  if (page.busy) return;
  page.busy = true;
  document.body.classList.add("busy");
  for (const button of document.querySelectorAll("button")) button.disabled = true;
  hideError();
  try {
    await operation();
  } catch (error) {
    showError({ message: error.message });
  } finally {
    page.busy = false;
    document.body.classList.remove("busy");
    document.body.dataset.operations = String(Number(document.body.dataset.operations || 0) + 1); // for tests and scripts
    for (const button of document.querySelectorAll("button")) button.disabled = false;
    if (page.session.open) setStatus("connected", "good");
  }
}

async function reset() {
  const data = {};
  const optionsText = $("#reset-options").value.trim();
  if (optionsText) {
    try {
      Object.assign(data, JSON.parse(optionsText));
    } catch (error) {
      throw new Error(`reset arguments: not valid JSON (${error.message})`);
    }
  }
  const seed = $("#seed").value.trim();
  if (seed !== "") data.seed = Number(seed);
  setStatus("resetting…", "busy");
  const reply = await page.session.request({ type: "reset", data });
  if (!accept(reply)) return;
  const previous = page.episodes[page.episodes.length - 1];
  if (previous && previous.end === "running") previous.end = "reset";
  const episode = { steps: 0, return: 0, end: "running" };
  page.episodes.push(episode);
  $("#steps").replaceChildren();
  showResult(reply.data, episode);
  await refreshState();
  if (page.form.toolEnvironment && !page.form.tools.length) await loadTools();
}

// MCP's tools/list on the session's own socket: not a step, so the episode is
// untouched. A server without MCP answers with an error; the tool name then
// stays free text (and "list tools" asks with a step).
async function loadTools() {
  const reply = await page.session.request({ type: "mcp", data: { jsonrpc: "2.0", id: 1, method: "tools/list" } });
  if (reply.type === "mcp" && reply.data && reply.data.result) page.form.setTools(reply.data.result.tools);
}

function repeatCount() {
  return Math.max(1, Math.min(1000, Math.floor(Number($("#repeat").value)) || 1));
}

async function step(action, repeat) {
  let episode = page.episodes[page.episodes.length - 1];
  if (!episode) {
    episode = { steps: 0, return: 0, end: "running" };
    page.episodes.push(episode);
  }
  for (let i = 0; i < repeat; i++) {
    setStatus(repeat > 1 ? `stepping ${i + 1}/${repeat}…` : "stepping…", "busy");
    const reply = await page.session.request({ type: "step", data: action, stream: true });
    if (!accept(reply)) return; // the session may be closing: ask nothing more
    episode.steps += 1;
    episode.return += reply.data.reward ?? 0;
    if (reply.data.done) episode.end = reply.data.truncated ? "truncated" : "terminated";
    logStep(episode, action, reply.data);
    showResult(reply.data, episode);
    if (reply.data.done || reply.data.truncated) break;
  }
  await refreshState();
}

// With one Discrete action (Atari, board games), a digit key picks that action
// and steps, so a game can be played frame by frame from the keyboard.
function stepOnDigit(event) {
  const typing = event.target.closest && event.target.closest("input, textarea, select");
  if (typing || page.busy || event.ctrlKey || event.metaKey || event.altKey || !/^[0-9]$/.test(event.key)) return;
  if (!page.form.pickDigit(event.key)) return;
  event.preventDefault();
  $("#action-form").requestSubmit();
}

// An error reply is shown as the server sent it; false stops the operation.
function accept(reply) {
  if (reply.type === "error") {
    showError(reply.data);
    return false;
  }
  if (reply.type !== "observation") {
    showError({ message: `unexpected reply of type ${JSON.stringify(reply.type)}` });
    return false;
  }
  return true;
}

async function refreshState() {
  if (!page.session.open) return;
  const reply = await page.session.request({ type: "state" });
  if (reply.type === "state") {
    $("#state").textContent = pretty(reply.data);
    $("#episode-id").textContent = reply.data.episode_id ?? "—";
  } else if (reply.type === "error") {
    showError(reply.data);
  }
}

// --- rendering -------------------------------------------------------------------------

function showResult(data, episode) {
  const fields = data.observation ?? {};
  renderObservation(data);
  showObservationErrors(fields);
  page.form.markLegalActions(fields);
  if (Array.isArray(fields.tools)) page.form.setTools(fields.tools); // a ListToolsObservation
  const done = Boolean(data.done);
  $("#step-count").textContent = String(episode.steps);
  $("#reward").textContent = data.reward === null || data.reward === undefined ? "—" : formatNumber(data.reward);
  $("#return").textContent = formatNumber(episode.return);
  $("#terminated").textContent = String(done && !data.truncated);
  $("#truncated").textContent = String(Boolean(data.truncated));
  $("#info").textContent = pretty(data.metadata ?? {});
  renderEpisodes();
}

function renderObservation(data) {
  const images = $("#images");
  const rows = [];
  for (const [name, value] of Object.entries(data.observation ?? {})) {
    if (typeof value === "string" && value.startsWith(IMAGE_PREFIX)) {
      let img = images.querySelector(`img[data-field="${CSS.escape(name)}"]`);
      if (!img) {
        img = el("img", { alt: name, title: name, dataset: { field: name } });
        img.addEventListener("load", () => {
          // Small frames (Atari's 160 wide) at twice their size, pixels kept sharp.
          img.style.width = img.naturalWidth < 400 ? `${img.naturalWidth * 2}px` : "";
        });
        images.append(el("figure", {}, img, el("figcaption", {}, name)));
      }
      if (img.getAttribute("src") !== value) img.src = value;
      continue;
    }
    rows.push(el("div", { class: "field", dataset: { field: name } }, el("div", { class: "name" }, name), renderValue(value)));
  }
  $("#observation").replaceChildren(...rows);
}

function renderValue(value) {
  if (value === null || value === undefined) return el("div", { class: "value muted" }, "—");
  if (typeof value === "string") return el("pre", { class: "value text" }, clip(value, 200000));
  if (typeof value === "number" || typeof value === "boolean") return el("code", { class: "value" }, String(value));
  return el("pre", { class: "value json" }, clip(pretty(value)));
}

// Environments that refuse an action inside the observation (OpenSpiel's illegal
// moves, BrowserGym's action errors, MCP tool errors) get the same banner as
// the server's own errors.
function showObservationErrors(fields) {
  for (const [name, value] of Object.entries(fields)) {
    if (!/error/i.test(name)) continue;
    if (typeof value === "string" && value) showError({ code: `observation.${name}`, message: value });
    else if (value && typeof value === "object" && value.message) showError({ code: `observation.${name}`, ...value });
  }
}

function renderEpisodes() {
  const rows = page.episodes.map((episode, i) =>
    el("tr", { class: episode.end }, el("td", {}, String(i + 1)), el("td", {}, String(episode.steps)), el("td", {}, formatNumber(episode.return)), el("td", {}, episode.end)),
  );
  $("#episodes tbody").replaceChildren(...rows.reverse());
}

function logStep(episode, action, data) {
  const steps = $("#steps");
  const reward = data.reward === null || data.reward === undefined ? "" : ` → reward ${formatNumber(data.reward)}`;
  const end = data.done ? (data.truncated ? " (truncated)" : " (terminated)") : "";
  steps.prepend(el("li", { value: String(episode.steps) }, el("code", {}, clip(JSON.stringify(action), 200)), reward + end));
  while (steps.children.length > STEP_LOG_LENGTH) steps.lastChild.remove();
}

// Errors of one operation pile up (a server error, then the connection closing);
// the next Reset or Step clears them.
function showError(data) {
  const box = $("#error");
  const details = Object.fromEntries(Object.entries(data).filter(([key]) => key !== "code" && key !== "message"));
  box.append(
    el(
      "div",
      {},
      el("strong", {}, data.code ? `${data.code}: ` : "error: "),
      el("span", { class: "message" }, data.message ?? ""),
      Object.keys(details).length ? el("pre", { class: "json" }, pretty(details)) : "",
    ),
  );
  box.hidden = false;
}

function hideError() {
  $("#error").hidden = true;
  $("#error").replaceChildren();
}

function setStatus(text, kind) {
  const status = $("#status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

main();
