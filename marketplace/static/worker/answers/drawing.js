// Boxes and polygons drawn on the image with annotorious (window.Annotorious, vendored), a
// label per object, each object editable and deletable; boxes also by their numbers (keyboard).
// Answers: {"objects": [{"label", "bbox": [x, y, w, h]}]} or {"objects": [{"label", "points": [[x, y], ...]}]},
// in the image's own pixels; {"objects": []} only when "Nothing to draw" is chosen.
import { button, el, itemView, loaded, pressNth } from "../dom.js";

const round = (v) => Math.round(v * 100) / 100;

function toAnnotation(object) {
  const selector = object.bbox
    ? (() => {
        const [x, y, w, h] = object.bbox;
        return { type: "RECTANGLE", geometry: { x, y, w, h, bounds: { minX: x, minY: y, maxX: x + w, maxY: y + h } } };
      })()
    : {
        type: "POLYGON",
        geometry: {
          points: object.points,
          bounds: {
            minX: Math.min(...object.points.map((p) => p[0])), minY: Math.min(...object.points.map((p) => p[1])),
            maxX: Math.max(...object.points.map((p) => p[0])), maxY: Math.max(...object.points.map((p) => p[1])),
          },
        },
      };
  return { id: object.id, bodies: [], target: { annotation: object.id, selector } };
}

function geometryOf(annotation) {
  const { type, geometry } = annotation.target.selector;
  if (type === "RECTANGLE") return { bbox: [geometry.x, geometry.y, geometry.w, geometry.h].map(round) };
  return { points: geometry.points.map(([x, y]) => [round(x), round(y)]) };
}

export function drawing(ctx) {
  const kind = ctx.annotation.type === "polygon" ? "polygon" : "bbox";
  const noun = kind === "polygon" ? "polygon" : "box";
  const labels = ctx.annotation.labels;
  const { element, image } = itemView(ctx.item.data, ctx.number);
  let made = 0;
  const newId = () => `${kind}-${ctx.item.id}-${Date.now()}-${(made += 1)}`;
  let objects = (ctx.answer?.objects || []).map((o) => ({ ...o, id: newId() }));
  let nothing = ctx.answer !== undefined && objects.length === 0;
  let current = labels[0];
  let selected = null;
  let annotator = null;

  if (!image) {
    ctx.container.append(element, el("p", { class: "error" }, "This item has no image to draw on."));
    return { onDigit: () => false, destroy() {} };
  }
  const labelButtons = labels.map((label, i) =>
    button(label, () => chooseLabel(label), { key: i < 9 ? i + 1 : undefined, pressed: label === current }),
  );
  const nothingButton = button("Nothing to draw", () => {
    for (const o of objects) annotator?.removeAnnotation(o.id);
    objects = [];
    nothing = true;
    sync();
    ctx.answered();
  }, { pressed: nothing });
  const addBox = kind === "bbox" ? button("Add box", () => addDefaultBox()) : null;
  const list = el("ol", { class: "objects", "aria-label": kind === "polygon" ? "Polygons drawn" : "Boxes drawn" });

  ctx.container.append(
    el("p", { class: "muted" }, kind === "polygon"
      ? "Click the outline's corners on the image; click the first corner again (or double-click) to close it."
      : "Drag on the image to draw a box (or use Add box and type its numbers)."),
    el("div", { class: "choices", role: "group", "aria-label": "Label for new objects (or the selected one)" }, labelButtons),
    el("div", { class: "canvas-wrap" }, element),
    el("div", { class: "choices" }, addBox, nothingButton),
    list,
  );

  function chooseLabel(label) {
    if (selected) {
      const object = objects.find((o) => o.id === selected);
      if (object) object.label = label;
    }
    current = label;
    labelButtons.forEach((b, i) => b.setAttribute("aria-pressed", String(labels[i] === label)));
    sync();
  }

  function addDefaultBox() {
    const w = image.naturalWidth || 100;
    const h = image.naturalHeight || 100;
    const object = { id: newId(), label: current, bbox: [round(w * 0.375), round(h * 0.375), round(w / 4), round(h / 4)] };
    objects.push(object);
    annotator?.addAnnotation(toAnnotation(object));
    nothing = false;
    sync();
    list.querySelector(`li:last-child input`)?.focus();
  }

  function sync() {
    ctx.setAnswer(
      objects.length
        ? { objects: objects.map(({ label, bbox, points }) => (bbox ? { label, bbox } : { label, points })) }
        : nothing ? { objects: [] } : undefined,
    );
    nothingButton.setAttribute("aria-pressed", String(nothing && objects.length === 0));
    renderList();
  }

  function renderList() {
    list.replaceChildren(
      ...objects.map((object, index) => {
        const name = `${noun} ${index + 1}`;
        const select = el("select", { "aria-label": `Label of ${name}`, onchange: (e) => { object.label = e.target.value; sync(); } },
          labels.map((label) => el("option", { value: label, selected: label === object.label }, label)));
        const numbers = object.bbox
          ? ["x", "y", "width", "height"].map((part, i) =>
              el("label", { class: "number" }, part === "width" ? "w" : part === "height" ? "h" : part,
                el("input", {
                  type: "number", step: "1", value: object.bbox[i], "aria-label": `${part} of ${name}`,
                  onchange: (e) => {
                    object.bbox[i] = round(Number(e.target.value));
                    annotator?.updateAnnotation(toAnnotation(object));
                    sync();
                  },
                })))
          : [el("span", { class: "muted" }, `${object.points.length} corners`)];
        const problems = ctx.errors?.objects?.[index] || [];
        return el("li", { class: problems.length ? "has-error" : "", "data-selected": object.id === selected ? "true" : undefined },
          el("strong", {}, name), select, numbers,
          button("Delete", () => {
            annotator?.removeAnnotation(object.id);
            objects = objects.filter((o) => o !== object);
            sync();
          }, { "aria-label": `Delete ${name}` }),
          problems.length ? el("p", { class: "error", role: "alert" }, problems.join("; ")) : null,
        );
      }),
    );
  }

  loaded(image).then(() => {
    if (!window.Annotorious) {
      ctx.container.append(el("p", { class: "error" }, "The drawing library did not load."));
      return;
    }
    annotator = window.Annotorious.createImageAnnotator(image, { drawingEnabled: true, drawingMode: kind === "polygon" ? "click" : "drag" });
    annotator.setDrawingTool(kind === "polygon" ? "polygon" : "rectangle");
    annotator.setAnnotations(objects.map(toAnnotation));
    annotator.on("createAnnotation", (annotation) => {
      objects.push({ id: annotation.id, label: current, ...geometryOf(annotation) });
      nothing = false;
      sync();
    });
    annotator.on("updateAnnotation", (annotation) => {
      const object = objects.find((o) => o.id === annotation.id);
      if (object) Object.assign(object, geometryOf(annotation));
      sync();
    });
    annotator.on("deleteAnnotation", (annotation) => {
      objects = objects.filter((o) => o.id !== annotation.id);
      sync();
    });
    annotator.on("selectionChanged", (chosen) => {
      selected = chosen.length ? chosen[0].id : null;
      renderList();
    });
  });
  sync();

  return {
    onDigit: (n) => pressNth(labelButtons, n),
    destroy() {
      annotator?.destroy();
    },
  };
}
