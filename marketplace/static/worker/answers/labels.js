// Classification (one button per label, keys 1-9) and multi-label (toggles).
import { button, el, itemView, pressNth } from "../dom.js";

export function classification(ctx) {
  const { element } = itemView(ctx.item.data, ctx.number);
  const buttons = ctx.annotation.labels.map((label, i) =>
    button(label, () => choose(label), { key: i < 9 ? i + 1 : undefined, pressed: ctx.answer?.label === label }),
  );
  function choose(label) {
    buttons.forEach((b, j) => b.setAttribute("aria-pressed", String(ctx.annotation.labels[j] === label)));
    ctx.setAnswer({ label });
    ctx.answered();
  }
  ctx.container.append(element, el("div", { class: "choices", role: "group", "aria-label": "Labels" }, buttons));
  return { onDigit: (n) => pressNth(buttons, n), destroy() {} };
}

export function multilabel(ctx) {
  const { element } = itemView(ctx.item.data, ctx.number);
  const chosen = new Set(ctx.answer?.labels || []);
  const toggles = ctx.annotation.labels.map((label, i) =>
    button(label, () => toggle(label), { key: i < 9 ? i + 1 : undefined, pressed: chosen.has(label) }),
  );
  const none = button("None of these", () => {
    chosen.clear();
    sync(true);
  }, { pressed: ctx.answer !== undefined && chosen.size === 0 });
  function toggle(label) {
    if (chosen.has(label)) chosen.delete(label);
    else chosen.add(label);
    sync(false);
  }
  function sync(explicitNone) {
    toggles.forEach((t, i) => t.setAttribute("aria-pressed", String(chosen.has(ctx.annotation.labels[i]))));
    none.setAttribute("aria-pressed", String(explicitNone && chosen.size === 0));
    const labels = ctx.annotation.labels.filter((l) => chosen.has(l));
    ctx.setAnswer(labels.length || explicitNone ? { labels } : undefined);
    if (explicitNone) ctx.answered();
  }
  ctx.container.append(
    element,
    el("div", { class: "choices", role: "group", "aria-label": "Labels (choose all that apply)" }, toggles, none),
  );
  return { onDigit: (n) => pressNth(toggles, n), destroy() {} };
}
