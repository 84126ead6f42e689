// Small DOM and formatting helpers for the /web page's modules.

export const $ = (selector) => document.querySelector(selector);

// el("a", {href, class, dataset: {...}}, ...children): an element in one expression.
export function el(tag, attributes = {}, ...children) {
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

export function formatNumber(x) {
  if (Number.isInteger(x)) return String(x);
  const [mantissa, exponent] = Number(x).toPrecision(6).split("e");
  // Trailing zeros of a decimal fraction only: "0.500000" -> "0.5", never "100000" -> "1".
  const trimmed = mantissa.includes(".") ? mantissa.replace(/0+$/, "").replace(/\.$/, "") : mantissa;
  return exponent === undefined ? trimmed : `${trimmed}e${exponent}`;
}

export function clip(text, limit = 20000) {
  return text.length <= limit ? text : `${text.slice(0, limit)}… (${text.length} characters)`;
}

// JSON with arrays of numbers on one line, so a board or a vector reads as one.
export function pretty(value, indent = "") {
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
