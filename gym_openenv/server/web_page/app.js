// The /web page: one OpenEnv session over /web/ws, a form built from /web/info.
// Plain browser JavaScript, no build step; gym_openenv/server/web.py serves it.
"use strict";

const IMAGE_PREFIX = "data:image/png;base64,";
const STEP_LOG_LENGTH = 200; // steps of the current episode kept in the list
const TEXT_AREA_LENGTH = 8192; // Text fields at least this long get a multi-line box

const $ = (selector) => document.querySelector(selector);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

// --- the session: OpenEnv's WebSocket messages, one request at a time --------

class Session {
  constructor({ onPartial, onClose, onUnexpected }) {
    this.ws = null;
    this.waiting = []; // resolvers of sent requests, in order (the server answers in order)
    this.onPartial = onPartial;
    this.onClose = onClose;
    this.onUnexpected = onUnexpected;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  async connect() {
    if (this.open) return;
    const url = new URL("/web/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onclose = (event) => reject(new Error(`could not open a session (WebSocket closed, code ${event.code}${event.reason ? ": " + event.reason : ""})`));
    });
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => this.closed(event);
    this.ws = ws;
  }

  async request(message) {
    await this.connect();
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.ws.send(JSON.stringify(message));
    });
  }

  receive(message) {
    if (message.type === "partial_observation") {
      this.onPartial(message.data);
      return;
    }
    const waiter = this.waiting.shift();
    if (waiter) waiter.resolve(message);
    else this.onUnexpected(message); // e.g. the capacity error sent before the server closes
  }

  closed(event) {
    this.ws = null;
    const reason = `the session ended (WebSocket closed, code ${event.code}${event.reason ? ": " + event.reason : ""})`;
    for (const waiter of this.waiting.splice(0)) waiter.reject(new Error(reason));
    this.onClose(event);
  }
}

// --- page state ----------------------------------------------------------------

const page = {
  info: null,
  session: null,
  busy: false,
  episodes: [], // {steps, return, end}
  readers: [], // functions adding one form control's value to an action
  tools: [], // tool environments: [{name, description, input_schema}]
};

async function main() {
  page.session = new Session({
    onPartial: (data) => renderObservation(data),
    onClose: (event) => setStatus(`not connected (code ${event.code}); the next Reset or Step opens a new session`, "idle"),
    onUnexpected: (message) => (message.type === "error" ? showError(message.data) : null),
  });
  let response;
  try {
    response = await fetch("/web/info", { credentials: "same-origin" });
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
  page.info = await response.json();
  renderHeader(page.info);
  buildActionForm(page.info);
  $("#reset-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act(reset);
  });
  $("#action-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act(step);
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

// --- the action form, from the action schema ------------------------------------

function buildActionForm(info) {
  const schema = info.schema.action;
  const required = new Set(schema.required || []);
  const properties = Object.entries(schema.properties || {}).filter(([name]) => name !== "metadata");
  const container = $("#action-fields");
  const toolEnvironment = "tool_name" in (schema.properties || {}) && "arguments" in (schema.properties || {});
  if (toolEnvironment) {
    page.toolEnvironment = true;
    page.tools = toolList(info.metadata.tools);
  }
  const spaceFields = properties.filter(([, prop]) => prop["x-gym-space"]);
  // Optional fields outside the space (settings such as a game name) fold away.
  const extras = el("div");
  for (const [name, rawProp] of properties) {
    const prop = resolve(rawProp, schema.$defs || {});
    const optional = !required.has(name);
    const onlySpaceField = spaceFields.length === 1 && spaceFields[0][0] === name;
    let control;
    if (toolEnvironment && name === "tool_name") control = toolPicker(name);
    else control = controlFor(name, prop, { optional, meanings: onlySpaceField ? info.metadata.action_meanings : null });
    control.input.id = `action-${name}`;
    control.input.name = name;
    control.input.dataset.field = name;
    if (onlySpaceField && control.input.tagName === "SELECT") page.actionSelect = control.input;
    const space = info.spaces.action.fields[name];
    const hint = [space, optional ? "optional" : null].filter(Boolean).join(" · ");
    const toolCall = toolEnvironment && (name === "tool_name" || name === "arguments");
    const target = optional && !prop["x-gym-space"] && !toolCall ? extras : container;
    target.append(
      el("label", { class: "field", for: control.input.id }, el("span", { class: "name" }, name), hint ? el("span", { class: "muted" }, hint) : ""),
      control.node ?? control.input,
    );
    if (control.input === page.actionSelect) {
      const digits = [...control.input.options].filter((o) => /^[0-9]$/.test(o.value)).map((o) => o.value);
      if (digits.length) container.append(el("div", { class: "muted" }, `keys ${digits[0]}–${digits[digits.length - 1]}: choose that action and step`));
    }
    page.readers.push((action) => {
      const value = control.read();
      if (value !== undefined) action[name] = value;
    });
  }
  if (extras.children.length) {
    container.append(el("details", { class: "extras" }, el("summary", {}, `optional fields (${extras.children.length / 2})`), extras));
  }
  if (!properties.length) container.append(el("p", { class: "muted" }, "This action has no fields."));
}

function resolve(prop, defs) {
  if (prop.$ref) return resolve(defs[prop.$ref.split("/").pop()] || {}, defs);
  const options = prop.anyOf || prop.oneOf;
  if (options) {
    // Optional[X] is anyOf [X, null]: the form shows X; an empty control sends nothing.
    const concrete = options.filter((option) => option.type !== "null");
    if (concrete.length === 1) return { ...resolve(concrete[0], defs), ...withoutUnion(prop) };
  }
  return prop;
}

function withoutUnion(prop) {
  const { anyOf, oneOf, ...rest } = prop;
  return rest;
}

// One control per field: {input, node?, read() -> value or undefined (send nothing)}.
// An optional field left empty (or on "default") is not sent: the server's default applies.
function controlFor(name, prop, { optional, meanings }) {
  const space = prop["x-gym-space"];
  const defaultOption = () => (optional ? [el("option", { value: "" }, "(default)")] : []);
  if (space && space.type === "Discrete") {
    const options = defaultOption();
    for (let i = 0; i < space.n; i++) {
      const value = space.start + i;
      const label = meanings && meanings.length === space.n ? `${value}: ${meanings[i]}` : String(value);
      options.push(el("option", { value: String(value), dataset: { label } }, label));
    }
    const input = el("select", { dataset: { start: String(space.start) } }, ...options);
    submitOnEnter(input);
    return { input, read: () => (input.value === "" ? undefined : Number(input.value)) };
  }
  const literals = prop.enum ?? (prop.const !== undefined ? [prop.const] : null);
  if (literals) {
    const options = literals.map((value, i) => el("option", { value: String(i) }, JSON.stringify(value)));
    const input = el("select", {}, ...defaultOption(), ...options);
    return { input, read: () => (input.value === "" ? undefined : literals[Number(input.value)]) };
  }
  if ((space && space.type === "Box" && space.shape.length === 0) || prop.type === "number" || prop.type === "integer") {
    const integer = space ? !/f/.test(space.dtype) : prop.type === "integer";
    const low = space ? Number(space.low) : prop.minimum;
    const high = space ? Number(space.high) : prop.maximum;
    const input = el("input", {
      type: "number",
      step: integer ? "1" : "any",
      min: Number.isFinite(low) ? String(low) : null,
      max: Number.isFinite(high) ? String(high) : null,
      placeholder: prop.default !== undefined ? `default ${prop.default}` : "",
    });
    return { input, read: () => (input.value.trim() === "" ? undefined : Number(input.value)) };
  }
  if (prop.type === "boolean") {
    if (optional) {
      const input = el("select", {}, ...defaultOption(), el("option", { value: "true" }, "true"), el("option", { value: "false" }, "false"));
      return { input, read: () => (input.value === "" ? undefined : input.value === "true") };
    }
    const input = el("input", { type: "checkbox" });
    return { input, read: () => input.checked };
  }
  if ((space && space.type === "Text") || prop.type === "string") {
    const maxLength = space ? space.max_length : prop.maxLength;
    const multiline = maxLength !== undefined && maxLength >= TEXT_AREA_LENGTH;
    const input = multiline ? el("textarea", { rows: 8, spellcheck: "false", class: "code" }) : el("input", { type: "text", spellcheck: "false" });
    if (multiline) submitOnCtrlEnter(input);
    return { input, read: () => (optional && input.value === "" ? undefined : input.value) };
  }
  // Arrays, objects, Box with a shape, MultiDiscrete, Dict ...: JSON.
  return jsonControl(name, template(space, prop), optional);
}

function jsonControl(name, initial, optional) {
  const input = el("textarea", { rows: 3, spellcheck: "false", class: "code", placeholder: optional ? initial : null });
  if (!optional) input.value = initial;
  submitOnCtrlEnter(input);
  return {
    input,
    read: () => {
      if (input.value.trim() === "") return undefined;
      try {
        return JSON.parse(input.value);
      } catch (error) {
        throw new Error(`${name}: not valid JSON (${error.message})`);
      }
    },
  };
}

function template(space, prop) {
  if (space && space.type === "Box") {
    const low = Number(space.low);
    const fill = Number.isFinite(low) && low > 0 ? low : 0;
    const build = (dims) => (dims.length ? Array.from({ length: dims[0] }, () => build(dims.slice(1))) : fill);
    return JSON.stringify(build(space.shape));
  }
  if (space && (space.type === "MultiBinary" || space.type === "MultiDiscrete")) {
    const n = space.type === "MultiBinary" ? space.n : space.nvec;
    return JSON.stringify(Array.isArray(n) ? n.map(() => 0) : Array.from({ length: n }, () => 0));
  }
  if (prop.default !== undefined) return JSON.stringify(prop.default);
  return prop.type === "array" ? "[]" : "{}";
}

function submitOnEnter(select) {
  select.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      select.form.requestSubmit();
    }
  });
}

function submitOnCtrlEnter(textarea) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      textarea.form.requestSubmit();
    }
  });
}

// Tool environments (MCP): a tool picker; `arguments` stays a JSON box that
// the picker fills with the chosen tool's parameters.
function toolList(tools) {
  if (!Array.isArray(tools)) return [];
  return tools
    .filter((tool) => tool && typeof tool.name === "string")
    .map((tool) => ({ name: tool.name, description: tool.description || "", input_schema: tool.input_schema || tool.inputSchema || {} }));
}

function toolPicker(name) {
  const input = el("input", { type: "text", list: "tool-names", spellcheck: "false", placeholder: "tool name" });
  const names = el("datalist", { id: "tool-names" });
  const chips = el("div", { class: "tools" });
  const description = el("div", { class: "muted" });
  const choose = () => {
    const tool = page.tools.find((t) => t.name === input.value);
    description.textContent = tool ? tool.description : "";
    for (const chip of chips.children) chip.classList.toggle("chosen", chip.textContent === input.value);
    const args = document.querySelector('[data-field="arguments"]');
    if (tool && args) {
      const skeleton = {};
      for (const [key, prop] of Object.entries(tool.input_schema.properties || {})) skeleton[key] = prop.default ?? null;
      args.value = JSON.stringify(skeleton, null, 2);
    }
  };
  page.refreshTools = () => {
    names.replaceChildren(...page.tools.map((tool) => el("option", { value: tool.name }, tool.description)));
    chips.replaceChildren(
      ...page.tools.map((tool) => {
        const chip = el("button", { type: "button", class: "chip", title: tool.description }, tool.name);
        chip.addEventListener("click", () => {
          input.value = tool.name;
          choose();
        });
        return chip;
      }),
    );
  };
  input.addEventListener("change", choose);
  page.refreshTools();
  // MCP's ListToolsAction, as a step of its own (tools also load by themselves
  // after Reset where the server answers MCP inside the session).
  const list = el("button", { type: "button", class: "chip" }, "list tools");
  list.addEventListener("click", () => act(() => step({ type: "list_tools" }, 1)));
  return { input, node: el("div", {}, input, names, el("div", { class: "tools" }, chips, list), description), read: () => input.value };
}

// With one Discrete action (Atari, board games), a digit key picks that action
// and steps, so a game can be played frame by frame from the keyboard.
function stepOnDigit(event) {
  const select = page.actionSelect;
  const typing = event.target.closest && event.target.closest("input, textarea, select");
  if (!select || typing || event.ctrlKey || event.metaKey || event.altKey || !/^[0-9]$/.test(event.key)) return;
  const option = [...select.options].find((o) => o.value === event.key);
  if (!option || page.busy) return;
  event.preventDefault();
  select.value = option.value;
  select.form.requestSubmit();
}

function readAction() {
  const action = {};
  for (const read of page.readers) read(action);
  return action;
}

// --- reset and step ------------------------------------------------------------------

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
  if (page.toolEnvironment && !page.tools.length) await loadTools();
}

// MCP's tools/list on the session's own socket: it is not a step, so the
// episode is untouched. A server without MCP answers with an error, and the
// tool name stays free text.
async function loadTools() {
  const reply = await page.session.request({ type: "mcp", data: { jsonrpc: "2.0", id: 1, method: "tools/list" } });
  const tools = reply.type === "mcp" && reply.data && reply.data.result ? reply.data.result.tools : null;
  if (Array.isArray(tools)) {
    page.tools = toolList(tools);
    page.refreshTools();
  }
}

// A malformed JSON field throws in readAction, before anything is sent.
async function step(action = readAction(), repeat = Math.max(1, Math.min(1000, Math.floor(Number($("#repeat").value)) || 1))) {
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
  renderObservation(data);
  showObservationErrors(data.observation ?? {});
  markLegalActions(data.observation ?? {});
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
  const fields = data.observation ?? {};
  const images = $("#images");
  const list = $("#observation");
  const rows = [];
  for (const [name, value] of Object.entries(fields)) {
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
  list.replaceChildren(...rows);
  if (Array.isArray(fields.tools) && page.refreshTools) {
    page.tools = toolList(fields.tools);
    page.refreshTools();
  }
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

// Games that name their legal actions (OpenSpiel's legal_actions, an action_mask)
// get them marked in the action dropdown; illegal ones stay selectable, so a
// person can see how the environment answers them.
function markLegalActions(fields) {
  const select = page.actionSelect;
  if (!select) return;
  let legal = null;
  if (Array.isArray(fields.legal_actions) && fields.legal_actions.every(Number.isInteger)) legal = new Set(fields.legal_actions);
  else if (Array.isArray(fields.action_mask)) {
    const start = Number(select.dataset.start || 0);
    legal = new Set(fields.action_mask.flatMap((bit, i) => (bit ? [start + i] : [])));
  }
  for (const option of select.options) {
    if (option.value === "") continue;
    const illegal = legal !== null && !legal.has(Number(option.value));
    option.textContent = option.dataset.label + (illegal ? " (illegal now)" : "");
    option.classList.toggle("illegal", illegal);
  }
}

function renderValue(value) {
  if (value === null || value === undefined) return el("div", { class: "value muted" }, "—");
  if (typeof value === "string") return el("pre", { class: "value text" }, clip(value, 200000));
  if (typeof value === "number" || typeof value === "boolean") return el("code", { class: "value" }, String(value));
  return el("pre", { class: "value json" }, clip(pretty(value)));
}

function renderEpisodes() {
  const body = $("#episodes tbody");
  const rows = page.episodes.map((episode, i) =>
    el("tr", { class: episode.end }, el("td", {}, String(i + 1)), el("td", {}, String(episode.steps)), el("td", {}, formatNumber(episode.return)), el("td", {}, episode.end)),
  );
  body.replaceChildren(...rows.reverse());
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

function formatNumber(x) {
  return Number.isInteger(x) ? String(x) : Number(x).toPrecision(6).replace(/\.?0+$/, "");
}

function clip(text, limit = 20000) {
  return text.length <= limit ? text : `${text.slice(0, limit)}… (${text.length} characters)`;
}

// JSON with arrays of numbers on one line, so a board or a vector reads as one.
function pretty(value, indent = "") {
  const inner = indent + "  ";
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== "object")) return `[${value.map((v) => JSON.stringify(v)).join(", ")}]`;
    return `[\n${value.map((v) => inner + pretty(v, inner)).join(",\n")}\n${indent}]`;
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length) return "{}";
    return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${pretty(value[k], inner)}`).join(",\n")}\n${indent}}`;
  }
  return JSON.stringify(value) ?? String(value);
}

main();
