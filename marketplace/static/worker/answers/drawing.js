// Boxes and polygons drawn on the image with annotorious (window.Annotorious, vendored), a
// label per object, each object editable and deletable; boxes also by their numbers (keyboard).
// A polygon object may have several parts ("Add part", then draw it): each part is one
// annotorious shape, the object holds their ids in `rings`.
// Answers: {"objects": [{"label", "bbox": [x, y, w, h]}]} or {"objects": [{"label", "points": [[x, y], ...]}]}
// ({"label", "polygons": [[[x, y], ...], ...]} for an object in several parts), in the image's
// own pixels; {"objects": []} only when "Nothing to draw" is chosen.
import { button, el, itemView, loaded, pressNth } from "../dom.js";

const round = (v) => Math.round(v * 100) / 100;

function toAnnotation(shape) {
  // shape: {id, bbox} (a box) or {id, points} (one ring of a polygon object)
  const selector = shape.bbox
    ? (() => {
        const [x, y, w, h] = shape.bbox;
        return { type: "RECTANGLE", geometry: { x, y, w, h, bounds: { minX: x, minY: y, maxX: x + w, maxY: y + h } } };
      })()
    : {
        type: "POLYGON",
        geometry: {
          points: shape.points,
          bounds: {
            minX: Math.min(...shape.points.map((p) => p[0])), minY: Math.min(...shape.points.map((p) => p[1])),
            maxX: Math.max(...shape.points.map((p) => p[0])), maxY: Math.max(...shape.points.map((p) => p[1])),
          },
        },
      };
  return { id: shape.id, bodies: [], target: { annotation: shape.id, selector } };
}

// The annotorious shapes of an object: a box, or each ring of a polygon.
const shapesOf = (object) => (object.bbox ? [object] : object.rings);

// What the server takes: a box, one ring as `points`, several as `polygons`.
function answerOf({ label, bbox, rings }) {
  if (bbox) return { label, bbox };
  return rings.length > 1 ? { label, polygons: rings.map((r) => r.points) } : { label, points: rings[0].points };
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
  const fromAnswer = (o) =>
    o.bbox
      ? { label: o.label, bbox: o.bbox, id: newId() }
      : { label: o.label, id: newId(), rings: (o.polygons || [o.points]).map((points) => ({ id: newId(), points })) };
  let objects = (ctx.answer?.objects || []).map(fromAnswer);
  let nothing = ctx.answer !== undefined && objects.length === 0;
  let current = labels[0];
  let selected = null;
  let addingTo = null; // a polygon object's id: the next shape drawn is its next part
  let annotator = null;
  const ownerOf = (shapeId) => objects.find((o) => shapesOf(o).some((shape) => shape.id === shapeId));

  if (!image) {
    ctx.container.append(element, el("p", { class: "error" }, "This item has no image to draw on."));
    return { onDigit: () => false, destroy() {} };
  }
  const labelButtons = labels.map((label, i) =>
    button(label, () => chooseLabel(label), { key: i < 9 ? i + 1 : undefined, pressed: label === current }),
  );
  const nothingButton = button("Nothing to draw", () => {
    for (const o of objects) for (const shape of shapesOf(o)) annotator?.removeAnnotation(shape.id);
    objects = [];
    nothing = true;
    sync();
    ctx.answered();
  }, { pressed: nothing });
  const addBox = kind === "bbox" ? button("Add box", () => addDefaultBox()) : null;
  const list = el("ol", { class: "objects", "aria-label": kind === "polygon" ? "Polygons drawn" : "Boxes drawn" });

  ctx.container.append(
    el("p", { class: "muted" }, kind === "polygon"
      ? "Click the outline's corners on the image; click the first corner again (or double-click) to close it. " +
        "An object in several parts (split by a pole): Add part on it, then draw the next part."
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
        ? { objects: objects.map(answerOf) }
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
          : polygonParts(object, name);
        const problems = ctx.errors?.objects?.[index] || [];
        return el("li", { class: problems.length ? "has-error" : "", "data-selected": object.id === selected ? "true" : undefined },
          el("strong", {}, name), select, numbers,
          button("Delete", () => {
            for (const shape of shapesOf(object)) annotator?.removeAnnotation(shape.id);
            objects = objects.filter((o) => o !== object);
            sync();
          }, { "aria-label": `Delete ${name}` }),
          problems.length ? el("p", { class: "error", role: "alert" }, problems.join("; ")) : null,
        );
      }),
    );
  }

  function polygonParts(object, name) {
    const corners = object.rings.map((r) => r.points.length).join(" + ");
    const parts = object.rings.length > 1 ? `${object.rings.length} parts, ` : "";
    const adding = addingTo === object.id;
    return [
      el("span", { class: "muted" }, `${parts}${corners} corners`),
      button(adding ? "Draw the part on the image" : "Add part", () => {
        addingTo = adding ? null : object.id;
        renderList();
      }, { "aria-label": `Add a part to ${name}`, pressed: adding }),
    ];
  }

  function created(annotation) {
    const part = addingTo && objects.find((o) => o.id === addingTo);
    addingTo = null;
    if (part) part.rings.push({ id: annotation.id, ...geometryOf(annotation) });
    else if (kind === "bbox") objects.push({ id: annotation.id, label: current, ...geometryOf(annotation) });
    else objects.push({ id: annotation.id, label: current, rings: [{ id: annotation.id, ...geometryOf(annotation) }] });
    nothing = false;
    sync();
  }

  function deleted(annotation) {
    const owner = ownerOf(annotation.id);
    if (owner?.rings) owner.rings = owner.rings.filter((r) => r.id !== annotation.id);
    objects = objects.filter((o) => o !== owner || (o.rings && o.rings.length));
    sync();
  }

  loaded(image).then(() => {
    if (!window.Annotorious) {
      ctx.container.append(el("p", { class: "error" }, "The drawing library did not load."));
      return;
    }
    annotator = window.Annotorious.createImageAnnotator(image, { drawingEnabled: true, drawingMode: kind === "polygon" ? "click" : "drag" });
    annotator.setDrawingTool(kind === "polygon" ? "polygon" : "rectangle");
    annotator.setAnnotations(objects.flatMap(shapesOf).map(toAnnotation));
    annotator.on("createAnnotation", created);
    annotator.on("updateAnnotation", (annotation) => {
      const shape = ownerOf(annotation.id) && shapesOf(ownerOf(annotation.id)).find((s) => s.id === annotation.id);
      if (shape) Object.assign(shape, geometryOf(annotation));
      sync();
    });
    annotator.on("deleteAnnotation", deleted);
    annotator.on("selectionChanged", (chosen) => {
      selected = chosen.length ? ownerOf(chosen[0].id)?.id ?? null : null;
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
