// Which answer controls an annotation type gets.
import { drawing } from "./drawing.js";
import { keypoints } from "./keypoints.js";
import { classification, multilabel } from "./labels.js";

const WIDGETS = { classification, multilabel, bbox: drawing, polygon: drawing, keypoints };

export function widgetFor(type) {
  return WIDGETS[type] || null;
}
