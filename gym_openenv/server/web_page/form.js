// The action form, built from the action's JSON schema (with x-gym-space).

import { el } from "./dom.js";

const TEXT_AREA_LENGTH = 8192; // Text fields at least this long get a multi-line box
const BOX_INPUTS = 8; // vectors up to this long get a number box per entry, longer ones JSON

export class ActionForm {
  // container: where the controls go; info: /web/info; onListTools: called by
  // the "list tools" button of a tool environment.
  constructor(container, info, { onListTools }) {
    const schema = info.schema.action;
    const properties = Object.entries(schema.properties || {}).filter(([name]) => name !== "metadata");
    const required = new Set(schema.required || []);
    const spaceFields = properties.filter(([, prop]) => prop["x-gym-space"]);
    this.readers = []; // each adds one control's value to an action
    this.actionSelect = null; // the dropdown of a single Discrete action
    this.tools = []; // tool environments: [{name, description, input_schema}]
    this.toolEnvironment = properties.some(([name]) => name === "tool_name") && properties.some(([name]) => name === "arguments");
    this.picker = null;
    // Optional fields outside the space (settings such as a game name) fold away.
    const extras = el("div");
    for (const [name, rawProp] of properties) {
      const prop = resolve(rawProp, schema.$defs || {});
      const optional = !required.has(name);
      const onlySpaceField = spaceFields.length === 1 && spaceFields[0][0] === name;
      let control;
      if (this.toolEnvironment && name === "tool_name") control = this.picker = new ToolPicker(onListTools);
      else control = controlFor(name, prop, { optional, meanings: onlySpaceField ? info.metadata.action_meanings : null });
      control.input.id = `action-${name}`;
      control.input.name = name;
      control.input.dataset.field = name;
      const space = info.spaces.action.fields[name];
      const hint = [space, optional ? "optional" : null].filter(Boolean).join(" · ");
      const toolCall = this.toolEnvironment && (name === "tool_name" || name === "arguments");
      const target = optional && !prop["x-gym-space"] && !toolCall ? extras : container;
      target.append(
        el("label", { class: "field", for: control.input.id }, el("span", { class: "name" }, name), hint ? el("span", { class: "muted" }, hint) : ""),
        control.node ?? control.input,
      );
      if (onlySpaceField && control.input.tagName === "SELECT") {
        this.actionSelect = control.input;
        const digits = [...control.input.options].filter((o) => /^[0-9]$/.test(o.value)).map((o) => o.value);
        if (digits.length) container.append(el("div", { class: "muted" }, `keys ${digits[0]}–${digits[digits.length - 1]}: choose that action and step`));
      }
      this.readers.push((action) => {
        const value = control.read();
        if (value !== undefined) action[name] = value;
      });
    }
    if (extras.children.length) {
      container.append(el("details", { class: "extras" }, el("summary", {}, `optional fields (${extras.children.length / 2})`), extras));
    }
    if (!properties.length) container.append(el("p", { class: "muted" }, "This action has no fields."));
    if (this.toolEnvironment) this.setTools(info.metadata.tools);
  }

  // The action the controls describe; throws on a malformed JSON field.
  read() {
    const action = {};
    for (const read of this.readers) read(action);
    return action;
  }

  // Tools as MCP's tools/list or a ListToolsObservation names them.
  setTools(tools) {
    if (!this.picker || !Array.isArray(tools)) return;
    this.tools = tools
      .filter((tool) => tool && typeof tool.name === "string")
      .map((tool) => ({ name: tool.name, description: tool.description || "", input_schema: tool.input_schema || tool.inputSchema || {} }));
    this.picker.show(this.tools);
  }

  // With one Discrete action, a digit key picks that action; true if it did.
  pickDigit(key) {
    const option = this.actionSelect && [...this.actionSelect.options].find((o) => o.value === key);
    if (!option) return false;
    this.actionSelect.value = option.value;
    return true;
  }

  // Games that name their legal actions (legal_actions, an action_mask) get them
  // marked in the dropdown; illegal ones stay selectable, so a person can see
  // how the environment answers them.
  markLegalActions(fields) {
    const select = this.actionSelect;
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
}

function resolve(prop, defs) {
  if (prop.$ref) return resolve(defs[prop.$ref.split("/").pop()] || {}, defs);
  const options = prop.anyOf || prop.oneOf;
  if (options) {
    // Optional[X] is anyOf [X, null]: the form shows X; an empty control sends nothing.
    const concrete = options.filter((option) => option.type !== "null");
    if (concrete.length === 1) {
      const { anyOf, oneOf, ...rest } = prop;
      return { ...resolve(concrete[0], defs), ...rest };
    }
  }
  return prop;
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
    const input = numberInput(space, prop, 0);
    return { input, read: () => (input.value.trim() === "" ? undefined : Number(input.value)) };
  }
  if (space && space.type === "Box" && space.shape.length === 1 && space.shape[0] <= BOX_INPUTS) {
    // A short vector (a torque, a joystick): one number box per entry.
    const inputs = Array.from({ length: space.shape[0] }, (_, i) => numberInput(space, prop, i));
    for (const input of inputs) input.value = String(boxFill(space, 0));
    const node = el("div", { class: "vector" }, ...inputs);
    return { input: inputs[0], node, read: () => inputs.map((input) => Number(input.value)) };
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

// A number box with the space's bounds (entry `index` of a Box's bounds).
function numberInput(space, prop, index) {
  const integer = space ? !/f/.test(space.dtype) : prop.type === "integer";
  const bound = (b) => Number(Array.isArray(b) ? b[index] : b);
  const low = space ? bound(space.low) : prop.minimum;
  const high = space ? bound(space.high) : prop.maximum;
  return el("input", {
    type: "number",
    step: integer ? "1" : "any",
    min: Number.isFinite(low) ? String(low) : null,
    max: Number.isFinite(high) ? String(high) : null,
    placeholder: prop.default !== undefined ? `default ${prop.default}` : "",
  });
}

// What a Box's form starts at: 0 where the space allows it, else its lower bound.
function boxFill(space) {
  const low = Number(Array.isArray(space.low) ? space.low[0] : space.low);
  return Number.isFinite(low) && low > 0 ? low : 0;
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
    const fill = boxFill(space);
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

// Tool environments (MCP): a name box with the known tools as buttons; picking
// one fills the `arguments` JSON box with the tool's parameters.
class ToolPicker {
  constructor(onListTools) {
    this.input = el("input", { type: "text", list: "tool-names", spellcheck: "false", placeholder: "tool name" });
    this.names = el("datalist", { id: "tool-names" });
    this.chips = el("div", { class: "tools" });
    this.description = el("div", { class: "muted" });
    this.tools = [];
    this.input.addEventListener("change", () => this.choose());
    // MCP's ListToolsAction, as a step of its own.
    const list = el("button", { type: "button", class: "chip" }, "list tools");
    list.addEventListener("click", onListTools);
    this.node = el("div", {}, this.input, this.names, el("div", { class: "tools" }, this.chips, list), this.description);
  }

  read() {
    return this.input.value;
  }

  show(tools) {
    this.tools = tools;
    this.names.replaceChildren(...tools.map((tool) => el("option", { value: tool.name }, tool.description)));
    this.chips.replaceChildren(
      ...tools.map((tool) => {
        const chip = el("button", { type: "button", class: "chip", title: tool.description }, tool.name);
        chip.addEventListener("click", () => {
          this.input.value = tool.name;
          this.choose();
        });
        return chip;
      }),
    );
  }

  choose() {
    const tool = this.tools.find((t) => t.name === this.input.value);
    this.description.textContent = tool ? tool.description : "";
    for (const chip of this.chips.children) chip.classList.toggle("chosen", chip.textContent === this.input.value);
    const args = this.input.form.querySelector('[data-field="arguments"]');
    if (tool && args) {
      const skeleton = {};
      for (const [key, prop] of Object.entries(tool.input_schema.properties || {})) skeleton[key] = prop.default ?? null;
      args.value = JSON.stringify(skeleton, null, 2);
    }
  }
}
