// Keypoints: click the job's named points in order on the image (konva draws them and the
// skeleton); a point can be marked occluded (the next click places it with v=1) or absent
// (v=0). Several objects (e.g. people) per image, each with a label.
// Answer: {"objects": [{"label", "keypoints": [[x, y, v], ...]}]} in the image's own pixels,
// v as in COCO (0 absent, 1 occluded, 2 visible); {"objects": []} only for "Nothing to draw".
import { button, el, itemView, loaded } from "../dom.js";

const STATES = { 0: "absent", 1: "occluded", 2: "visible" };

export function keypoints(ctx) {
  const names = ctx.annotation.points || ctx.annotation.keypoints || [];
  const skeleton = ctx.annotation.skeleton || [];
  const labels = ctx.annotation.labels || ["object"];
  const { element, image } = itemView(ctx.item.data, ctx.number);
  let objects = (ctx.answer?.objects || []).map((o) => ({ label: o.label, keypoints: o.keypoints.map((p) => [...p]) }));
  let nothing = ctx.answer !== undefined && objects.length === 0;
  let active = 0; // the object being placed
  let occludedNext = false;
  let stage = null;
  let layer = null;
  let scale = 1;

  if (!image || !names.length) {
    ctx.container.append(element, el("p", { class: "error" }, "This item cannot take keypoints (no image or no point names)."));
    return { onDigit: () => false, destroy() {} };
  }
  const overlay = el("div", { class: "keypoint-stage", style: "position:absolute;left:0;top:0" });
  const wrap = el("div", { class: "canvas-wrap" }, element, overlay);
  const guide = el("p", { "aria-live": "polite" });
  const list = el("div");
  const nothingButton = button("Nothing to draw", () => {
    objects = [];
    nothing = true;
    sync();
    ctx.answered();
  }, { pressed: nothing });
  ctx.container.append(guide, wrap, el("div", { class: "choices" },
    button("Add object", () => { objects.push(newObject()); active = objects.length - 1; nothing = false; sync(); }),
    nothingButton), list);

  function newObject() {
    return { label: labels[0], keypoints: names.map(() => null) };
  }
  const nextPoint = (object) => object.keypoints.findIndex((p) => p === null);

  function place(x, y) {
    if (!objects.length) objects.push(newObject());
    const object = objects[active] || objects[objects.length - 1];
    const at = nextPoint(object);
    if (at < 0) return;
    object.keypoints[at] = [Math.round(x * 100) / 100, Math.round(y * 100) / 100, occludedNext ? 1 : 2];
    occludedNext = false;
    nothing = false;
    sync();
  }

  function sync() {
    const complete = objects.length > 0 && objects.every((o) => nextPoint(o) < 0);
    ctx.setAnswer(complete ? { objects: objects.map((o) => ({ label: o.label, keypoints: o.keypoints })) } : nothing ? { objects: [] } : undefined);
    nothingButton.setAttribute("aria-pressed", String(nothing && !objects.length));
    const object = objects[active];
    const at = object ? nextPoint(object) : 0;
    guide.textContent = !objects.length
      ? `Click the ${names[0]} of the first object (or choose Nothing to draw).`
      : at < 0 ? "Every point of this object is placed. Add another object, or go on."
      : `Click the ${names[at]}${occludedNext ? " (it will be marked occluded)" : ""}.`;
    renderList();
    draw();
  }

  function renderList() {
    list.replaceChildren(...objects.map((object, o) => {
      const name = `object ${o + 1}`;
      const at = nextPoint(object);
      return el("section", { "aria-label": name },
        el("div", { class: "choices" },
          el("strong", {}, name),
          el("select", { "aria-label": `Label of ${name}`, onchange: (e) => { object.label = e.target.value; sync(); } },
            labels.map((l) => el("option", { value: l, selected: l === object.label }, l))),
          button("Delete", () => { objects.splice(o, 1); active = Math.max(0, objects.length - 1); sync(); }, { "aria-label": `Delete ${name}` }),
        ),
        el("ol", { class: "points" }, names.map((point, p) => {
          const value = object.keypoints[p];
          return el("li", { class: o === active && p === at ? "current" : "" },
            el("span", {}, point),
            el("span", { class: "state" }, value ? STATES[value[2]] : "not placed"),
            button("Occluded", () => { active = o; redo(object, p); occludedNext = true; sync(); }, { "aria-label": `Mark ${point} of ${name} occluded` }),
            button("Absent", () => { active = o; object.keypoints[p] = [0, 0, 0]; sync(); }, { "aria-label": `Mark ${point} of ${name} absent` }),
            value ? button("Redo", () => { active = o; redo(object, p); sync(); }, { "aria-label": `Place ${point} of ${name} again` }) : null,
          );
        })),
      );
    }));
  }

  function redo(object, p) {
    // Points are placed in order: clearing one makes it the next to place.
    object.keypoints[p] = null;
  }

  function draw() {
    if (!layer) return;
    layer.destroyChildren();
    for (const object of objects) {
      const shown = object.keypoints.map((p) => (p && p[2] > 0 ? p : null));
      for (const [a, b] of skeleton) {
        const from = shown[names.indexOf(a)];
        const to = shown[names.indexOf(b)];
        if (from && to) layer.add(new window.Konva.Line({ points: [from[0] * scale, from[1] * scale, to[0] * scale, to[1] * scale], stroke: "#1f5fbf", strokeWidth: 2 }));
      }
      shown.forEach((p) => {
        if (p) layer.add(new window.Konva.Circle({ x: p[0] * scale, y: p[1] * scale, radius: 5, fill: p[2] === 2 ? "#1f5fbf" : "#fff", stroke: "#1f5fbf", strokeWidth: 2 }));
      });
    }
    layer.draw();
  }

  function fit() {
    if (!stage) return;
    scale = image.clientWidth / (image.naturalWidth || image.clientWidth || 1);
    stage.size({ width: image.clientWidth, height: image.clientHeight });
    draw();
  }

  loaded(image).then(() => {
    if (!window.Konva) {
      ctx.container.append(el("p", { class: "error" }, "The drawing library did not load."));
      return;
    }
    stage = new window.Konva.Stage({ container: overlay, width: image.clientWidth, height: image.clientHeight });
    layer = new window.Konva.Layer();
    stage.add(layer);
    stage.on("click tap", () => {
      const at = stage.getPointerPosition();
      if (at) place(at.x / scale, at.y / scale);
    });
    window.addEventListener("resize", fit);
    fit();
  });
  sync();

  return {
    onDigit: () => false,
    destroy() {
      window.removeEventListener("resize", fit);
      stage?.destroy();
    },
  };
}
