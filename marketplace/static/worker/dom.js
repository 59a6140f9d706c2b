// Small DOM helpers shared by the page's modules.

/** An element with attributes (`on*` functions become listeners) and children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null && child !== false) node.append(child);
  }
  return node;
}

/** A button named by its text; `key` (1-9) shows as a hint that is not part of the name. */
export function button(text, onclick, { key, pressed, ...attributes } = {}) {
  const hint = key ? el("span", { class: "key", "aria-hidden": "true" }, String(key)) : null;
  return el(
    "button",
    { type: "button", onclick, "aria-keyshortcuts": key ? String(key) : undefined,
      "aria-pressed": pressed === undefined ? undefined : String(Boolean(pressed)), ...attributes },
    hint,
    text,
  );
}

/** What a worker sees of an item: its image (from `data.image_url`), its text, its other plain fields. */
export function itemView(data, number) {
  const element = el("div", { class: "item-data" });
  let image = null;
  if (typeof data.image_url === "string") {
    image = el("img", { src: data.image_url, alt: `Item ${number}`, referrerpolicy: "no-referrer", draggable: "false" });
    element.append(image);
  }
  if (typeof data.text === "string") element.append(el("p", { class: "text" }, data.text));
  const rest = Object.entries(data).filter(
    ([name, value]) => !["image_url", "text"].includes(name) && ["string", "number", "boolean"].includes(typeof value),
  );
  if (rest.length) element.append(el("dl", {}, rest.map(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))])));
  if (!image && typeof data.text !== "string" && !rest.length) element.append(el("p", { class: "muted" }, "(this item has nothing to show)"));
  return { element, image };
}

/** Resolves once an image has its natural size (or failed to load). */
export function loaded(image) {
  if (image.complete && image.naturalWidth) return Promise.resolve(image);
  return new Promise((resolve) => {
    image.addEventListener("load", () => resolve(image), { once: true });
    image.addEventListener("error", () => resolve(image), { once: true });
  });
}

/** Every message in a nested marshmallow error object, as "path: reason" lines. */
export function messages(errors, path = []) {
  if (errors === null || errors === undefined) return [];
  if (typeof errors === "string") return [path.length ? `${path.join(".")}: ${errors}` : errors];
  if (Array.isArray(errors)) return errors.flatMap((e) => messages(e, path));
  return Object.entries(errors).flatMap(([name, value]) => messages(value, [...path, name]));
}

/** Keys 1-9: press the n-th of these buttons; false when there is none (the key is not ours). */
export function pressNth(buttons, n) {
  if (!buttons[n - 1]) return false;
  buttons[n - 1].click();
  return true;
}
