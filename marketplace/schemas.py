"""API shapes: validation, errors and the OpenAPI document come from these schemas."""

from __future__ import annotations

import json
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_dump, post_load, validate, validates, validates_schema

import aggregation
from marketplace.services.exports.coco import MASKS as COCO_MASKS
from marketplace.settings import ANNOTATION_DEFAULTS, ANNOTATION_KINDS, CLASSIFICATION

MAX_ID = 2**63 - 1
MAX_LABEL = 200  # characters of an answer's label
MAX_ANSWERS = 100  # answers in one submit (items_per_task is at most 100)
MAX_LABELS = 200  # labels of a job's annotation
MAX_OBJECTS = 1000  # objects of an answer (a job's max_objects is at most this)
ANNOTATION_TYPES = ANNOTATION_KINDS
AGGREGATION_METHODS = aggregation.METHODS
MAX_ITEM_DATA_BYTES = 16 * 1024


def Id(**kwargs: Any) -> fields.Integer:  # noqa: N802 - reads like a field class
    return fields.Integer(strict=True, validate=validate.Range(1, MAX_ID), **kwargs)


class String(fields.String):
    """A string PostgreSQL can store: its text columns refuse the NUL character (a database
    error, so a 500, where the field should be named)."""

    default_error_messages = {"nul": "must not contain the NUL character"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise self.make_error("nul")
        return text


class StrictFloat(fields.Float):
    """A JSON number, not a numeric string or a boolean (marshmallow's Float takes both)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


Name = String(validate=validate.Length(1, 200))
THRESHOLD = validate.Range(0.05, 0.95)


class AnnotationSchema(Schema):
    """What workers answer: `classification` (one of `labels`), `multilabel` (a set of them,
    possibly empty), `bbox`, `polygon` or `keypoints` (objects, each with one of `labels`).
    Settings a type does not use are refused; those left out get their defaults."""

    type = String(required=True, validate=validate.OneOf(ANNOTATION_TYPES))
    labels = fields.List(Name, required=True, validate=validate.Length(1, 200))
    min_size = StrictFloat(
        allow_nan=False,
        validate=validate.Range(0, 10_000),
        metadata={"description": "bbox: the smallest width and height in pixels (default 4)"},
    )
    max_objects = fields.Integer(
        strict=True, validate=validate.Range(1, 1000), metadata={"description": "objects per answer (default 100)"}
    )
    min_vertices = fields.Integer(
        strict=True, validate=validate.Range(3, 10_000), metadata={"description": "polygon (default 3)"}
    )
    max_vertices = fields.Integer(
        strict=True, validate=validate.Range(3, 10_000), metadata={"description": "polygon (default 200)"}
    )
    points = fields.List(
        Name, validate=validate.Length(1, 100), metadata={"description": "keypoints (required): the points' names"}
    )
    skeleton = fields.List(
        fields.List(Name, validate=validate.Length(2, 2)),
        validate=validate.Length(0, 1000),
        metadata={"description": "keypoints: pairs of point names drawn joined"},
    )
    sigmas = fields.List(
        StrictFloat(allow_nan=False, validate=validate.Range(0.001, 10, min_inclusive=True)),
        metadata={"description": "keypoints: OKS sigma per point (default: COCO's for person points)"},
    )
    iou_threshold = StrictFloat(
        allow_nan=False,
        validate=THRESHOLD,
        metadata={"description": "bbox, polygon: the IoU at which two objects match (default 0.5)"},
    )
    oks_threshold = StrictFloat(
        allow_nan=False,
        validate=THRESHOLD,
        metadata={"description": "keypoints: the OKS at which two objects match (default 0.5)"},
    )

    @validates("labels")
    def _unique(self, value: list[str], **_: Any) -> None:
        if len(set(value)) != len(value):
            raise ValidationError("labels must be unique")

    @validates_schema
    def _settings_of_the_type(self, data: dict[str, Any], **_: Any) -> None:
        kind = data.get("type")
        if kind not in ANNOTATION_TYPES:
            return
        if kind == CLASSIFICATION and len(data.get("labels", ())) < 2:
            raise ValidationError("a classification needs at least 2 labels", field_name="labels")
        allowed = set(ANNOTATION_DEFAULTS[kind]) | ({"points", "sigmas"} if kind == "keypoints" else set())
        for name in sorted(set(data) - {"type", "labels"} - allowed):
            raise ValidationError(f"not used by the {kind} type", field_name=name)
        if kind == "polygon" and data.get("max_vertices", 200) < data.get("min_vertices", 3):
            raise ValidationError("must be at least min_vertices", field_name="max_vertices")
        if kind == "keypoints":
            _check_keypoint_spec(data)

    @post_load
    def _defaults(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """type, labels, the type's other fields (keypoints' names), then every setting."""
        defaults = ANNOTATION_DEFAULTS[data["type"]]
        named = {"type": data["type"], "labels": data["labels"]}
        named.update({k: v for k, v in data.items() if k not in named and k not in defaults})
        return {**named, **{k: data.get(k, v) for k, v in defaults.items()}}


def _check_keypoint_spec(data: dict[str, Any]) -> None:
    points = data.get("points")
    if points is None:
        raise ValidationError("a keypoints job names its points", field_name="points")
    if len(set(points)) != len(points):
        raise ValidationError("point names must be unique", field_name="points")
    for index, (a, b) in enumerate(data.get("skeleton", [])):
        if a not in points or b not in points or a == b:
            raise ValidationError(f"{index}: a pair of two different names of points", field_name="skeleton")
    if "sigmas" in data and len(data["sigmas"]) != len(points):
        raise ValidationError(f"one per point ({len(points)})", field_name="sigmas")


PRICING_MODELS = ("per_item", "per_object", "tiered")
TIER_TYPES = (*ANNOTATION_KINDS, "mask")
CENTS = validate.Range(0, 100_000)


class PricingSchema(Schema):
    """`per_item` {cents}, `per_object` {cents_per_object, max_objects}, `tiered` {tiers: {type: cents}}."""

    model = String(required=True, validate=validate.OneOf(PRICING_MODELS))
    cents = fields.Integer(strict=True, validate=CENTS)
    cents_per_object = fields.Integer(strict=True, validate=CENTS)
    max_objects = fields.Integer(strict=True, validate=validate.Range(1, 1000))
    tiers = fields.Dict(
        keys=String(validate=validate.OneOf(TIER_TYPES)),
        values=fields.Integer(strict=True, validate=CENTS),
        validate=validate.Length(1, len(TIER_TYPES)),
    )

    @validates_schema
    def _model_fields(self, data: dict[str, Any], **_: Any) -> None:
        needed = {"per_item": ("cents",), "per_object": ("cents_per_object", "max_objects"), "tiered": ("tiers",)}
        model = data.get("model", "")
        for name in needed.get(model, ()):
            if name not in data:
                raise ValidationError(f"required by the {model} model", field_name=name)
        for name in ("cents", "cents_per_object", "max_objects", "tiers"):
            if name in data and name not in needed.get(model, ()):
                raise ValidationError(f"not used by the {model} model", field_name=name)


class BonusSchema(Schema):
    golden_accuracy_above = StrictFloat(required=True, allow_nan=False, validate=validate.Range(0.5, 0.999))
    cents_per_item = fields.Integer(strict=True, required=True, validate=validate.Range(1, 100_000))


class AcceptanceSchema(Schema):
    """How submitted work is judged (within the operator's limits, see `config.py`)."""

    reject_failed_golden = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 100))
    min_agreement = StrictFloat(allow_none=True, allow_nan=False, validate=validate.Range(0.0, 1.0))
    auto_accept_seconds = fields.Integer(strict=True, validate=validate.Range(0, 365 * 24 * 3600))


class QualificationSettingsSchema(Schema):
    """A test on `items` golden items before real tasks; `carry_over`: a worker whose golden
    record on the requester's other jobs already meets the mark skips it."""

    items = fields.Integer(strict=True, required=True, validate=validate.Range(1, 50))
    pass_mark = StrictFloat(required=True, allow_nan=False, validate=validate.Range(0.0, 1.0, min_inclusive=False))
    carry_over = fields.Boolean(load_default=False)


class JobCreateSchema(Schema):
    title = String(required=True, validate=validate.Length(1, 200))
    instructions = String(required=True, validate=validate.Length(0, 20_000))
    annotation = fields.Nested(AnnotationSchema, required=True)
    overlap = fields.Integer(strict=True, load_default=3, validate=validate.Range(1, 50))
    overlap_max = fields.Integer(strict=True, validate=validate.Range(1, 50))
    target_confidence = StrictFloat(allow_nan=False, validate=validate.Range(0.5, 0.9999))
    golden_ratio = StrictFloat(load_default=0.1, allow_nan=False, validate=validate.Range(0.0, 0.9))
    items_per_task = fields.Integer(strict=True, load_default=5, validate=validate.Range(1, 100))
    reward_cents = fields.Integer(strict=True, validate=CENTS)
    pricing = fields.Nested(PricingSchema)
    bonus = fields.Nested(BonusSchema, allow_none=True)
    acceptance = fields.Nested(AcceptanceSchema)
    budget_cents = fields.Integer(strict=True, load_default=0, validate=validate.Range(0, 10**12))
    aggregation = String(load_default="auto", validate=validate.OneOf(AGGREGATION_METHODS))
    lease_seconds = fields.Integer(strict=True, load_default=600, validate=validate.Range(10, 7 * 24 * 3600))
    qualification = fields.Nested(QualificationSettingsSchema, allow_none=True, load_default=None)
    golden_max_views = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(1, 10_000),
        metadata={"description": "a golden item is shown to at most this many workers (default: 2 x overlap)"},
    )

    @validates_schema
    def _dynamic_overlap(self, data: dict[str, Any], **_: Any) -> None:
        check_dynamic_overlap(data.get("overlap", 3), data.get("overlap_max"), data.get("target_confidence"))

    @validates_schema
    def _method_of_the_type(self, data: dict[str, Any], **_: Any) -> None:
        check_method((data.get("annotation") or {}).get("type"), data.get("aggregation", "auto"))

    @validates_schema
    def _one_price(self, data: dict[str, Any], **_: Any) -> None:
        if "pricing" in data and "reward_cents" in data:
            raise ValidationError("give pricing or reward_cents (flat per item), not both", field_name="reward_cents")
        tiers = (data.get("pricing") or {}).get("tiers")
        kind = (data.get("annotation") or {}).get("type")
        if tiers is not None and kind is not None and kind not in tiers:
            raise ValidationError(f"no price for the job's annotation type {kind!r}", field_name="pricing")


def check_method(kind: str | None, method: str) -> None:
    """The label methods aggregate classification; every other type has its own (`auto`)."""
    if kind is not None and kind != CLASSIFICATION and method != "auto":
        raise ValidationError(
            f"{kind} answers are aggregated by their own method: leave it auto", field_name="aggregation"
        )


def check_dynamic_overlap(minimum: int, maximum: int | None, target: float | None) -> None:
    """Dynamic overlap needs both a maximum and a target, and the maximum is at least the minimum."""
    if (maximum is None) != (target is None):
        field = "target_confidence" if target is None else "overlap_max"
        raise ValidationError("dynamic overlap needs both overlap_max and target_confidence", field_name=field)
    if maximum is not None and maximum < minimum:
        raise ValidationError("must be at least overlap (the minimum)", field_name="overlap_max")


class JobPatchSchema(Schema):
    title = String(validate=validate.Length(1, 200))
    instructions = String(validate=validate.Length(0, 20_000))
    overlap = fields.Integer(strict=True, validate=validate.Range(1, 50))
    overlap_max = fields.Integer(strict=True, validate=validate.Range(1, 50))
    target_confidence = StrictFloat(allow_nan=False, validate=validate.Range(0.5, 0.9999))
    golden_ratio = StrictFloat(allow_nan=False, validate=validate.Range(0.0, 0.9))
    items_per_task = fields.Integer(strict=True, validate=validate.Range(1, 100))
    aggregation = String(validate=validate.OneOf(AGGREGATION_METHODS))
    lease_seconds = fields.Integer(strict=True, validate=validate.Range(10, 7 * 24 * 3600))
    budget_cents = fields.Integer(strict=True, validate=validate.Range(0, 10**12))
    acceptance = fields.Nested(AcceptanceSchema)
    qualification = fields.Nested(QualificationSettingsSchema, allow_none=True)
    golden_max_views = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 10_000))

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("give at least one setting to change", field_name="_schema")


class JobSchema(Schema):
    id = fields.Integer()
    title = String()
    instructions = String()
    annotation = fields.Dict()
    overlap = fields.Integer()
    overlap_max = fields.Integer(allow_none=True)
    target_confidence = fields.Float(allow_none=True)
    golden_ratio = StrictFloat()
    items_per_task = fields.Integer()
    reward_cents = fields.Integer()
    pricing = fields.Dict(allow_none=True)
    bonus = fields.Dict(allow_none=True)
    acceptance = fields.Dict(allow_none=True)
    budget_cents = fields.Integer()
    currency = String()
    aggregation = String()
    lease_seconds = fields.Integer()
    qualification = fields.Dict(allow_none=True)
    golden_max_views = fields.Integer(allow_none=True)
    state = String()
    created_at = fields.DateTime()
    progress = fields.Dict()
    quality = fields.Dict()


MAX_KEY = 200  # characters of an item's key


class GoldenAnswer(fields.Field):
    """A golden item's known answer: a label (classification) or an object with the shape of a
    worker's answer without `item_id` (`{"objects": [...]}`, `{"labels": [...]}`), checked
    against the job's annotation when the items are added (`marketplace/answer_checks.py`)."""

    default_error_messages = {"invalid": "a label, or an object holding 'objects' or 'labels'"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label = String(validate=validate.Length(1, MAX_LABEL))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return self.label.deserialize(value, attr, data, **kwargs)
        if type(value) is dict:
            return value
        raise self.make_error("invalid")


class ItemInSchema(Schema):
    """One item to add: its data, the requester's `key` for it (unique in the job; its id when
    left out), and for a golden item the known `answer`. Items of bbox, polygon and keypoints
    jobs need the image's `width` and `height` (pixels) in `data`."""

    key = String(
        validate=validate.Length(1, MAX_KEY),
        metadata={"description": "your name for the item, unique in the job; results carry it"},
    )
    data = fields.Dict(required=True, keys=String())
    answer = GoldenAnswer(
        metadata={
            "description": 'golden items only: the right label; for multilabel {"labels": [...]}, for bbox, '
            'polygon and keypoints {"objects": [...]} as a worker answers them'
        }
    )

    @validates("data")
    def _small(self, value: dict[str, Any], **_: Any) -> None:
        if len(json.dumps(value)) > MAX_ITEM_DATA_BYTES:
            raise ValidationError(f"item data is larger than {MAX_ITEM_DATA_BYTES} bytes")


class ItemRefSchema(Schema):
    id = fields.Integer()
    key = String()


class ItemsAddedSchema(Schema):
    added = fields.Integer()
    golden = fields.Integer()
    items = fields.List(
        fields.Nested(ItemRefSchema),
        metadata={"description": "each item's id and key, in the order the items were sent"},
    )


class ItemSchema(Schema):
    """An item as its requester uploaded it (requesters and operators only)."""

    id = fields.Integer()
    key = String()
    data = fields.Dict()
    golden = fields.Boolean()
    answer = GoldenAnswer(
        allow_none=True,
        metadata={"description": "golden items: the right answer (a label or an object); null otherwise"},
    )


class ItemsQuerySchema(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(0, MAX_ID), metadata={"description": "an item id"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class ItemsPageSchema(Schema):
    items = fields.List(fields.Nested(ItemSchema))
    next_after = fields.Integer(allow_none=True)


class LeaseRequestSchema(Schema):
    job_id = Id()


class TaskItemSchema(Schema):
    """What a worker sees of an item: golden or not, exactly the same two fields."""

    id = fields.Integer()
    data = fields.Dict()


class TaskJobSchema(Schema):
    id = fields.Integer()
    title = String()
    instructions = String()
    annotation = fields.Dict()


class TaskPaySchema(Schema):
    currency = String()
    item_cents = fields.Integer(metadata={"description": "the most one item pays (golden or not: the same)"})
    task_cents = fields.Integer(metadata={"description": "the most the whole task pays, before any bonus"})
    bonus_item_cents = fields.Integer(metadata={"description": "added per item when your golden record is good"})
    object_cents = fields.Integer(metadata={"description": "per_object pricing: what each object drawn pays"})


class AssignmentSchema(Schema):
    id = fields.Integer()
    kind = String(metadata={"description": "task, or qualification: a test to pass before real tasks"})
    state = String()
    items = fields.List(fields.Nested(TaskItemSchema))
    expires_at = fields.DateTime()
    job = fields.Nested(TaskJobSchema)
    pay = fields.Nested(TaskPaySchema)
    submitted_answers = fields.List(
        fields.Nested("AnswerInSchema"), metadata={"description": "your answers, once submitted (GET only)"}
    )
    submitted_at = fields.DateTime(allow_none=True, metadata={"description": "when your submit arrived (GET only)"})
    decision = String(allow_none=True, metadata={"description": "accepted | rejected, once decided"})
    decision_reason = String(allow_none=True)
    paid_cents = fields.Integer(allow_none=True)


class AnswerInSchema(Schema):
    """One item's answer, in the field the job's annotation type asks for: `label`
    (classification), `labels` (multilabel: a set of labels, possibly empty) or `objects` (bbox,
    polygon, keypoints: an empty list is "nothing to draw"). The objects are checked against the
    job's annotation and the item's image before anything is stored (a 422 names the place)."""

    item_id = Id(required=True)
    label = String(validate=validate.Length(1, MAX_LABEL), metadata={"description": "classification"})
    labels = fields.List(
        String(validate=validate.Length(1, MAX_LABEL)),
        validate=validate.Length(0, MAX_LABELS),
        metadata={"description": "multilabel: the labels that apply, possibly none"},
    )
    objects = fields.List(
        fields.Dict(keys=String()),
        validate=validate.Length(0, MAX_OBJECTS),
        metadata={
            "description": 'bbox: {"label", "bbox": [x, y, w, h]}; polygon: {"label", "points": [[x, y], ...]}, '
            'or for an object in several disjoint parts {"label", "polygons": [[[x, y], ...], ...]} (exactly one '
            "of points and polygons; each part is checked as a ring, and parts must not overlap); "
            'keypoints: {"label", "keypoints": [[x, y, v], ...]} (v: 0 not labelled, 1 occluded, 2 visible); '
            "pixels of the item's image"
        },
    )

    @validates_schema
    def _one_answer(self, data: dict[str, Any], **_: Any) -> None:
        given = [name for name in ("label", "labels", "objects") if name in data]
        if len(given) != 1:
            raise ValidationError(
                "give one of label (classification), labels (multilabel) or objects (bbox, polygon, keypoints)",
                field_name=given[1] if len(given) > 1 else "label",
            )


class SubmitSchema(Schema):
    answers = fields.List(fields.Nested(AnswerInSchema), required=True, validate=validate.Length(1, MAX_ANSWERS))

    @validates_schema
    def _distinct_items(self, data: dict[str, Any], **_: Any) -> None:
        ids = [a["item_id"] for a in data.get("answers", [])]
        if len(set(ids)) != len(ids):
            raise ValidationError("each item may be answered once", field_name="answers")


class SubmitResultSchema(Schema):
    id = fields.Integer()
    state = String()
    answers = fields.Integer()
    submitted_at = fields.DateTime()
    qualification = String(metadata={"description": "a qualification test's outcome: passed or failed"})

    @post_dump
    def _tasks_have_no_outcome(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data.get("qualification") is None:
            data.pop("qualification", None)
        return data


class ResultSchema(Schema):
    item_id = fields.Integer()
    key = String(metadata={"description": "the item's key, as uploaded"})
    data = fields.Dict(metadata={"description": "the item's data, as uploaded"})
    label = String(allow_none=True, metadata={"description": "classification: the aggregated label"})
    labels = fields.List(String(), allow_none=True, metadata={"description": "multilabel: the labels that apply"})
    objects = fields.List(
        fields.Dict(),
        allow_none=True,
        metadata={
            "description": "bbox, polygon, keypoints: the fused objects, each with its geometry, label, score "
            "(skill-weighted support in [0, 1]) and n (workers who drew it); [] when there is nothing. A polygon "
            "in one piece has points, one in several pieces polygons (a list of rings)"
        },
    )
    confidence = fields.Float(allow_none=True)
    method = String(allow_none=True)
    version = String(allow_none=True)
    answers = fields.Integer()


class ResultsQuerySchema(Schema):
    format = String(
        load_default="json",
        validate=validate.OneOf(("json", "csv", "jsonl", "coco", "yolo", "voc", "labelstudio")),
        metadata={
            "description": "json (pages), csv or jsonl (all rows); for annotation jobs also coco (bbox, polygon, "
            "keypoints), yolo (a zip: detect, segment or pose), voc (a zip of Pascal VOC XML: bbox), labelstudio"
        },
    )
    masks = String(
        validate=validate.OneOf(COCO_MASKS),
        metadata={
            "description": "coco of a polygon job only (elsewhere a 422): segmentation as polygons (the default: "
            'one flat list per part) or rle (compressed COCO RLE {"size": [h, w], "counts"} per object)'
        },
    )
    after = fields.Integer(strict=False, load_default=0, validate=validate.Range(0, MAX_ID))
    limit = fields.Integer(strict=False, load_default=100, validate=validate.Range(1, 1000))


class ResultsPageSchema(Schema):
    results = fields.List(fields.Nested(ResultSchema))
    next_after = fields.Integer(allow_none=True)


class AccountCreateSchema(Schema):
    role = String(required=True, validate=validate.OneOf(("requester", "worker", "operator")))
    name = String(required=True, validate=validate.Length(1, 200))


class AccountCreatedSchema(Schema):
    id = fields.Integer()
    role = String()
    name = String()
    key = String()


class KeyRotateSchema(Schema):
    grace_seconds = fields.Integer(strict=True, load_default=3600, validate=validate.Range(0, 7 * 86400))


class KeyRotatedSchema(Schema):
    key = String()
    old_key_valid_until = fields.DateTime()


class KeyRevokeSchema(Schema):
    reason = String(load_default="", validate=validate.Length(0, 500))
    reissue = fields.Boolean(load_default=False)


class KeyRevokedSchema(Schema):
    account_id = fields.Integer()
    keys_revoked = fields.Integer()
    key = String(allow_none=True)


GOLDEN_ACCURACY = "golden_correct / golden_seen; null before the first golden answer"
GOLDEN_SMOOTHED = "(golden_correct + 1) / (golden_seen + 2): the estimate a bonus compares, kept from 1 of 1 = 100%"


class WorkerQualitySchema(Schema):
    worker_id = fields.Integer()
    job_id = fields.Integer()
    answers = fields.Integer()
    golden_seen = fields.Integer()
    golden_correct = fields.Integer()
    golden_accuracy = fields.Float(allow_none=True, metadata={"description": GOLDEN_ACCURACY})
    golden_accuracy_smoothed = fields.Float(allow_none=True, metadata={"description": GOLDEN_SMOOTHED})
    agreement = fields.Float(allow_none=True)


class LedgerLineSchema(Schema):
    transaction_id = fields.Integer()
    kind = String()
    amount_cents = fields.Integer()
    currency = String()
    job_id = fields.Integer(allow_none=True)
    assignment_id = fields.Integer(allow_none=True)
    payout_run_id = fields.Integer(allow_none=True)
    memo = String()
    at = fields.DateTime()


class DecisionSchema(Schema):
    assignment_id = fields.Integer()
    job_id = fields.Integer()
    decision = String()
    reason = String()
    paid_cents = fields.Integer(allow_none=True)
    decided_at = fields.DateTime()


class SettledChecksSchema(Schema):
    accuracy = fields.Float(
        allow_none=True,
        metadata={"description": "your accuracy on the quality checks of every job, from answers before `as_of`"},
    )
    checked = fields.Integer(allow_none=True, metadata={"description": "how many checked answers it is over"})
    as_of = fields.DateTime(metadata={"description": "the start of yesterday (UTC): the figure moves once a day"})
    min_count = fields.Integer(metadata={"description": "shown once at least this many golden answers count"})


class MeSchema(Schema):
    id = fields.Integer()
    role = String()
    name = String()
    status = String()
    assignments_submitted = fields.Integer()
    answers = fields.Integer()
    currency = String()
    balance_cents = fields.Integer(
        metadata={"description": "requesters: funds not given to a job; workers: earned, not yet paid out"}
    )
    paid_out_cents = fields.Integer()
    history = fields.List(fields.Nested(LedgerLineSchema))
    decisions = fields.List(fields.Nested(DecisionSchema))
    quality = fields.List(
        fields.Nested(WorkerQualitySchema),
        metadata={"description": "per job; a worker's own view has answers and agreement only (see `checks`)"},
    )
    checks = fields.Nested(SettledChecksSchema, metadata={"description": "workers: their own quality-check record"})
    carry_over_skills = fields.Boolean(
        metadata={"description": "requesters: aggregation starts from workers' skills on your earlier jobs"}
    )


class MeUpdateSchema(Schema):
    carry_over_skills = fields.Boolean(required=True)


class AggregateQueuedSchema(Schema):
    job_id = fields.Integer()
    queued = fields.Boolean()


class BanSchema(Schema):
    reason = String(required=True, validate=validate.Length(1, 500))
    exclude_answers = fields.Boolean(load_default=False)
    scope = String(load_default="everywhere", validate=validate.OneOf(("everywhere", "job", "requester")))
    job_id = Id()
    requester_id = Id()
    duration_seconds = fields.Integer(strict=True, validate=validate.Range(60, 365 * 24 * 3600))

    @validates_schema
    def _scope_target(self, data: dict[str, Any], **_: Any) -> None:
        for scope, field in (("job", "job_id"), ("requester", "requester_id")):
            if data.get("scope") == scope and field not in data:
                raise ValidationError(f"scope {scope} needs {field}", field_name=field)
            if data.get("scope") != scope and field in data:
                raise ValidationError(f"only with scope {scope}", field_name=field)


class UnbanSchema(Schema):
    reason = String(load_default="", validate=validate.Length(0, 500))


class BanResultSchema(Schema):
    worker_id = fields.Integer()
    status = String()
    revoked_leases = fields.Integer()
    excluded_answers = fields.Integer()
    jobs_reopened = fields.List(fields.Integer())


class AuditQuerySchema(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(0, MAX_ID))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class QualificationQuerySchema(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(0, MAX_ID))  # a worker id
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class QualificationSchema(Schema):
    worker_id = fields.Integer()
    state = String()
    correct = fields.Integer(allow_none=True)
    total = fields.Integer(allow_none=True)
    source = String()
    created_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


class AuditEventSchema(Schema):
    id = fields.Integer()
    at = fields.DateTime()
    actor_id = fields.Integer(allow_none=True)
    action = String()
    subject_type = String()
    subject_id = fields.Integer()
    reason = String()
    details = fields.Dict()


class QualityQuerySchema(Schema):
    job_id = fields.Integer(validate=validate.Range(1, MAX_ID))  # a query string: not strict


class RankingQuerySchema(Schema):
    job_id = fields.Integer(validate=validate.Range(1, MAX_ID))
    sort = String(
        load_default="golden_accuracy",
        validate=validate.OneOf(
            ("golden_accuracy", "golden_accuracy_smoothed", "golden_ci_low", "agreement", "answers")
        ),
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class QualityFiguresSchema(Schema):
    answers = fields.Integer()
    golden_seen = fields.Integer()
    golden_correct = fields.Integer()
    golden_accuracy = fields.Float(allow_none=True, metadata={"description": GOLDEN_ACCURACY})
    golden_accuracy_smoothed = fields.Float(allow_none=True, metadata={"description": GOLDEN_SMOOTHED})
    golden_ci_low = fields.Float(allow_none=True)
    golden_ci_high = fields.Float(allow_none=True)
    agreement = fields.Float(allow_none=True)


class DailyQualitySchema(QualityFiguresSchema):
    day = String()


class RankedWorkerSchema(QualityFiguresSchema):
    worker_id = fields.Integer()
    status = String(allow_none=True)


class RuleConditionSchema(Schema):
    type = String(
        required=True,
        validate=validate.OneOf(
            ("answers_at_chance", "golden_accuracy_below", "agreement_below", "too_fast", "skip_share_above")
        ),
    )
    threshold = StrictFloat(allow_nan=False, validate=validate.Range(0.0, 1.0))
    seconds_per_item = StrictFloat(allow_nan=False, validate=validate.Range(0.01, 3600.0))
    min_count = fields.Integer(strict=True, load_default=10, validate=validate.Range(1, 100_000))

    @validates_schema
    def _limit_for_type(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type") == "too_fast":
            if "seconds_per_item" not in data:
                raise ValidationError("too_fast needs seconds_per_item", field_name="seconds_per_item")
        elif "threshold" not in data:
            raise ValidationError(f"{data.get('type')} needs a threshold between 0 and 1", field_name="threshold")


class RuleActionSchema(Schema):
    type = String(required=True, validate=validate.OneOf(("ban_job", "ban_everywhere", "cooldown", "flag")))
    cooldown_seconds = fields.Integer(strict=True, validate=validate.Range(60, 30 * 24 * 3600))
    exclude_answers = fields.Boolean(load_default=False)

    @validates_schema
    def _cooldown(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type") == "cooldown" and "cooldown_seconds" not in data:
            raise ValidationError("cooldown needs cooldown_seconds", field_name="cooldown_seconds")


class RuleCreateSchema(Schema):
    job_id = Id()
    condition = fields.Nested(RuleConditionSchema, required=True)
    action = fields.Nested(RuleActionSchema, required=True)


class RuleSchema(Schema):
    id = fields.Integer()
    job_id = fields.Integer(allow_none=True)
    condition = fields.Dict()
    action = fields.Dict()
    enabled = fields.Boolean()
    created_at = fields.DateTime()


class FundSchema(Schema):
    amount_cents = fields.Integer(strict=True, required=True, validate=validate.Range(1, 10**10))
    currency = String(required=True, validate=validate.Length(3, 3))


class FundedSchema(Schema):
    transaction_id = fields.Integer()
    account_id = fields.Integer()
    amount_cents = fields.Integer()
    currency = String()
    balance_cents = fields.Integer()


class SpendSchema(Schema):
    job_id = fields.Integer()
    currency = String()
    budget_cents = fields.Integer()
    work_cents = fields.Integer()
    bonus_cents = fields.Integer()
    refunded_cents = fields.Integer()
    held_cents = fields.Integer()
    available_cents = fields.Integer()
    accepted = fields.Integer()
    rejected = fields.Integer()


class PayoutRunSchema(Schema):
    id = fields.Integer()
    state = String()
    currency = String()
    workers = fields.Integer()
    total_cents = fields.Integer()
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    lines = fields.List(fields.Dict())


class PayoutFileQuerySchema(Schema):
    format = String(load_default="json", validate=validate.OneOf(("json", "csv")))


class LedgerCheckSchema(Schema):
    ok = fields.Boolean()
    problems = fields.List(String())


WEBHOOK_EVENTS = ("job.finished", "aggregation.done", "payout_run.done")


class WebhookCreateSchema(Schema):
    url = String(
        required=True,
        validate=validate.Length(1, 2000),
        metadata={"description": "http(s) URL that receives a signed POST per event"},
    )
    events = fields.List(
        String(validate=validate.OneOf(WEBHOOK_EVENTS)),
        validate=validate.Length(1, len(WEBHOOK_EVENTS)),
        metadata={
            "description": "requesters: job.finished, aggregation.done; operators: payout_run.done (default: all)"
        },
    )
    description = String(load_default="", validate=validate.Length(0, 200))


class WebhookSchema(Schema):
    id = fields.Integer()
    url = String()
    events = fields.List(String())
    description = String()
    created_at = fields.DateTime()


class WebhookCreatedSchema(WebhookSchema):
    secret = String(metadata={"description": "signs every delivery; shown here only, once"})


class DeliveryQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    before = fields.Integer(
        validate=validate.Range(1, MAX_ID),
        metadata={"description": "deliveries with smaller ids (the next page: the last id seen)"},
    )


class DeliveryAttemptSchema(Schema):
    at = String()
    attempt = fields.Integer()
    status = fields.Integer(allow_none=True)
    error = String(allow_none=True)
    ms = fields.Integer()


class DeliverySchema(Schema):
    id = fields.Integer()
    event_id = String(attribute="event_key", metadata={"description": "the event's id, as in its body"})
    event_type = String()
    state = String(metadata={"description": "pending, delivered or failed"})
    attempts = fields.Integer()
    last_status = fields.Integer(allow_none=True)
    last_error = String(allow_none=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    log = fields.List(fields.Nested(DeliveryAttemptSchema))
