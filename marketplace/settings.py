"""A job's settings as types: what the JSON columns hold, read once where they are used.

The API's schemas (`schemas.py`) validate them on the way in; these are what services read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLASSIFICATION = "classification"
MULTILABEL = "multilabel"
GEOMETRY_KINDS = ("bbox", "polygon", "keypoints")
ANNOTATION_KINDS = (CLASSIFICATION, MULTILABEL, *GEOMETRY_KINDS)
# Per type, the settings a job's `annotation` may carry besides `type` and `labels`, with their
# defaults (filled in when the job is created, so workers and exports read them as stored).
ANNOTATION_DEFAULTS: dict[str, dict[str, Any]] = {
    CLASSIFICATION: {},
    MULTILABEL: {},
    "bbox": {"min_size": 4, "max_objects": 100, "iou_threshold": 0.5},
    "polygon": {"min_vertices": 3, "max_vertices": 200, "max_objects": 100, "iou_threshold": 0.5},
    "keypoints": {"max_objects": 100, "skeleton": [], "oks_threshold": 0.5},
}


@dataclass(frozen=True)
class AnnotationSpec:
    """A job's `annotation`: its type, labels and the limits every answer is checked against
    (`marketplace/answer_checks.py`). What an answer holds: a `label` (classification), a set of
    `labels` (multilabel) or `objects` (bbox, polygon, keypoints)."""

    kind: str
    labels: tuple[str, ...]
    min_size: float = 4.0
    max_objects: int = 100
    min_vertices: int = 3
    max_vertices: int = 200
    points: tuple[str, ...] = ()
    skeleton: tuple[tuple[str, str], ...] = ()
    sigmas: tuple[float, ...] | None = None

    @classmethod
    def load(cls, stored: dict[str, Any]) -> AnnotationSpec:
        defaults = ANNOTATION_DEFAULTS.get(stored["type"], {})

        def setting(name: str, fallback: Any) -> Any:
            return stored.get(name, defaults.get(name, fallback))

        sigmas = stored.get("sigmas")
        return cls(
            kind=stored["type"],
            labels=tuple(stored["labels"]),
            min_size=float(setting("min_size", 4)),
            max_objects=int(setting("max_objects", 100)),
            min_vertices=int(setting("min_vertices", 3)),
            max_vertices=int(setting("max_vertices", 200)),
            points=tuple(stored.get("points") or ()),
            skeleton=tuple((str(a), str(b)) for a, b in stored.get("skeleton") or ()),
            sigmas=None if sigmas is None else tuple(float(s) for s in sigmas),
        )

    @property
    def is_geometry(self) -> bool:
        return self.kind in GEOMETRY_KINDS

    @property
    def answer_field(self) -> str:
        """The field of a worker's answer (and of a golden item's `answer`) that holds it."""
        if self.kind == CLASSIFICATION:
            return "label"
        return "labels" if self.kind == MULTILABEL else "objects"

    @property
    def shape_fields(self) -> tuple[str, ...]:
        """The fields of an object that may hold its geometry (exactly one of them does): a
        polygon is one ring (`points`) or several disjoint parts (`polygons`)."""
        return {"bbox": ("bbox",), "polygon": ("points", "polygons"), "keypoints": ("keypoints",)}[self.kind]


@dataclass(frozen=True)
class QualificationSettings:
    """A test on `items` golden items before real tasks, passed at `pass_mark`; `carry_over`:
    a worker whose golden record on the requester's other jobs already meets the mark skips it."""

    items: int
    pass_mark: float
    carry_over: bool = False

    @classmethod
    def load(cls, stored: dict[str, Any]) -> QualificationSettings:
        return cls(int(stored["items"]), float(stored["pass_mark"]), bool(stored.get("carry_over", False)))


@dataclass(frozen=True)
class Pricing:
    """What an answered item pays (`job.pricing`): `per_item` (flat `cents`), `per_object`
    (`cents_per_object` for each object drawn, up to `max_objects` an item) or `tiered` (cents by
    annotation type). Golden items pay like real ones, so pay never tells a worker which items
    were golden."""

    model: str
    cents: int = 0
    cents_per_object: int = 0
    max_objects: int = 0
    tiers: tuple[tuple[str, int], ...] = ()

    @classmethod
    def load(cls, stored: dict[str, Any] | None, reward_cents: int | None = None) -> Pricing:
        """The stored pricing; none stored: `reward_cents` (default 1) flat per item."""
        if stored is None:
            return cls("per_item", cents=1 if reward_cents is None else reward_cents)
        return cls(
            model=stored["model"],
            cents=int(stored.get("cents", 0)),
            cents_per_object=int(stored.get("cents_per_object", 0)),
            max_objects=int(stored.get("max_objects", 0)),
            tiers=tuple(sorted((str(k), int(v)) for k, v in (stored.get("tiers") or {}).items())),
        )

    def stored(self) -> dict[str, Any]:
        """As the job's JSON column holds it (the fields of its model only)."""
        if self.model == "per_item":
            return {"model": self.model, "cents": self.cents}
        if self.model == "per_object":
            return {"model": self.model, "cents_per_object": self.cents_per_object, "max_objects": self.max_objects}
        return {"model": self.model, "tiers": dict(self.tiers)}

    def item_pay(self, annotation_type: str, objects: int = 1) -> int:
        """What an item answered with `objects` objects pays (a label is one object)."""
        if self.model == "per_item":
            return self.cents
        if self.model == "per_object":
            return self.cents_per_object * min(objects, self.max_objects)
        return dict(self.tiers)[annotation_type]

    def item_pay_max(self, annotation_type: str) -> int:
        """The most an item can pay: what a lease holds per entry, before any bonus."""
        if self.model == "per_object":
            return self.cents_per_object * self.max_objects
        return self.item_pay(annotation_type)


@dataclass(frozen=True)
class Bonus:
    """Cents per item added to accepted work of a worker whose golden accuracy on the job is
    above the bar (`job.bonus`)."""

    golden_accuracy_above: float
    cents_per_item: int

    @classmethod
    def load(cls, stored: dict[str, Any] | None) -> Bonus | None:
        if not stored:
            return None
        return cls(float(stored["golden_accuracy_above"]), int(stored["cents_per_item"]))

    def per_item(self, golden_accuracy: float | None) -> int:
        if golden_accuracy is None or golden_accuracy <= self.golden_accuracy_above:
            return 0
        return self.cents_per_item


@dataclass(frozen=True)
class AcceptanceRules:
    """How a requester judges submitted work (`job.acceptance`), within the operator's limits
    (`services/acceptance.Limits`); None: that rule is off (auto-accept: the operator's default)."""

    reject_failed_golden: int | None = None
    min_agreement: float | None = None
    auto_accept_seconds: int | None = None

    @classmethod
    def load(cls, stored: dict[str, Any] | None) -> AcceptanceRules:
        stored = stored or {}
        failed, agreement, delay = (
            stored.get("reject_failed_golden"),
            stored.get("min_agreement"),
            stored.get("auto_accept_seconds"),
        )
        return cls(
            None if failed is None else int(failed),
            None if agreement is None else float(agreement),
            None if delay is None else int(delay),
        )


@dataclass(frozen=True)
class LeaseLimits:
    """How much open work one worker may hold (config: MAX_OPEN_LEASES, MAX_OPEN_LEASES_PER_JOB):
    a worker (or a few accounts) hoarding leases holds the work and its budget from everyone."""

    open_leases: int = 3
    open_leases_per_job: int = 2

    @classmethod
    def from_config(cls, config: Any) -> LeaseLimits:
        return cls(int(config["MAX_OPEN_LEASES"]), int(config["MAX_OPEN_LEASES_PER_JOB"]))
