"""Fusion of objects drawn by several workers: clusters, support, skills, geometry, labels.

The loop, in the manner of Dawid-Skene for labels:

1. Cluster each item's objects across answers by similarity (IoU, or OKS for keypoints);
   on a golden item the gold objects seed clusters of their own.
2. Support of a cluster = the skill of the workers who drew it over the skill of every worker
   who answered the item (an empty answer is a vote against every cluster). A cluster is kept
   when its support reaches `min_support` (default 0.5: a weighted majority).
3. The reference: on golden items the gold (a cluster is real when it holds a gold object),
   elsewhere the fused result (a cluster is real when kept, its geometry the fused one).
4. Skills from agreement with the reference, scored as golden answers are: the F1 of the
   worker's objects that fall in real clusters times their mean similarity to the reference,
   each part shrunk towards the crowd's mean by `PRIOR_WEIGHT` pseudo-answers.
5. Each kind learns its geometry model from the reference (boxes: a bias and a noise level per
   worker and edge) and fuses every cluster, weighted by skill; repeat from 2 until the kept
   clusters and geometry settle.

Labels are voted per cluster by skill, ties going to the label first in the spec's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .clustering import cluster_objects
from .shapes import FloatArray, IntArray, labels_of, objects_of

MAX_ITERATIONS = 20
PRIOR_WEIGHT = 2.0
"""Pseudo-answers at the crowd's mean that every worker's precision, recall and similarity start with."""
DEFAULT_MIN_SUPPORT = 0.5


class Kind(Protocol):
    """What a geometry kind supplies to the fusion loop. `Geometries` are numpy arrays
    (one row per object; an object array of shapely polygons for polygons)."""

    method: str

    def parse(self, objects: Sequence[Mapping[str, Any]]) -> Any: ...

    def empty(self) -> Any: ...

    def similarity(self, a: Any, b: Any, area: float) -> FloatArray: ...

    def paired(self, a: Any, b: Any, area: FloatArray) -> FloatArray: ...

    def fit(self, objects: Objects, reference: Any, weight: FloatArray, gold: np.ndarray) -> None: ...

    def fuse(self, objects: Objects, skills: FloatArray, n_clusters: int) -> Any: ...

    def dump(self, geometry: Any, size: tuple[float, float] | None) -> dict[str, Any]: ...


@dataclass
class Objects:
    """Every object of every answer, flattened; codes index `Layout.tasks` / `.workers`."""

    task: IntArray
    worker: IntArray
    label: np.ndarray
    geometry: Any
    cluster: IntArray


@dataclass
class Layout:
    """Who answered what, the clusters, and the gold objects of golden items."""

    tasks: pd.Index
    workers: pd.Index
    answer_task: IntArray
    answer_worker: IntArray
    golden_task: np.ndarray  # bool per task
    cluster_task: IntArray
    cluster_gold: IntArray  # index into gold_geometry, -1 when the cluster holds no gold object
    gold_geometry: Any
    areas: FloatArray  # image area per task (1.0 when unknown)

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_task)


@dataclass
class Fused:
    """The loop's outcome, per cluster and per worker."""

    geometry: Any
    support: FloatArray
    keep: np.ndarray
    label: np.ndarray
    members: IntArray
    skills: FloatArray


def take(geometry: Any, index: IntArray) -> Any:
    """Rows of a geometry array (works for numeric and object arrays alike)."""
    return geometry[index]


def build(
    kind: Kind,
    frame: pd.DataFrame,
    golden: Mapping[str, Mapping[str, Any]],
    areas: Mapping[str, float],
    threshold: float,
) -> tuple[Objects, Layout]:
    """Parse and cluster the answers (`frame`: task, worker, value; sorted by task, worker)."""
    tasks = pd.Index(pd.unique(frame["task"]), dtype=object)
    workers = pd.Index(np.sort(pd.unique(frame["worker"])), dtype=object)
    task_code = tasks.get_indexer(frame["task"]).astype(np.int64)
    worker_code = workers.get_indexer(frame["worker"]).astype(np.int64)
    geometry_parts: list[Any] = []
    gold_parts: list[Any] = []
    obj_task: list[IntArray] = []
    obj_worker: list[IntArray] = []
    obj_label: list[str] = []
    obj_cluster: list[IntArray] = []
    cluster_task: list[IntArray] = []
    cluster_gold: list[IntArray] = []
    n_gold_total = 0
    n_clusters_total = 0
    values = frame["value"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, task_code[1:] != task_code[:-1], True])
    area_per_task = np.array([float(areas.get(t, 1.0)) for t in tasks])
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        t = int(task_code[start])
        gold_objects = objects_of(golden[tasks[t]]) if tasks[t] in golden else []
        parsed = [objects_of(values[i]) for i in range(start, stop)]
        everything = list(gold_objects) + [o for p in parsed for o in p]
        if not everything:
            continue
        owners = np.concatenate(
            [np.full(len(gold_objects), -1, dtype=np.int64)]
            + [np.full(len(p), worker_code[start + j], dtype=np.int64) for j, p in enumerate(parsed)]
        )
        geometry = kind.parse(everything)
        labels = labels_of(everything)
        sim = kind.similarity(geometry, geometry, area_per_task[t])
        clusters = cluster_objects(sim, owners, labels, threshold, n_gold=len(gold_objects))
        n_gold = len(gold_objects)
        gold_parts.append(take(geometry, np.arange(n_gold)))
        geometry_parts.append(take(geometry, np.arange(n_gold, len(everything))))
        obj_task.append(np.full(len(everything) - n_gold, t, dtype=np.int64))
        obj_worker.append(owners[n_gold:])
        obj_label.extend(labels[n_gold:])
        obj_cluster.append(clusters[n_gold:] + n_clusters_total)
        n_here = int(clusters.max()) + 1
        cluster_task.append(np.full(n_here, t, dtype=np.int64))
        gold_index = np.full(n_here, -1, dtype=np.int64)
        gold_index[:n_gold] = np.arange(n_gold) + n_gold_total
        cluster_gold.append(gold_index)
        n_gold_total += n_gold
        n_clusters_total += n_here
    empty_int = np.zeros(0, dtype=np.int64)
    objects = Objects(
        task=np.concatenate(obj_task) if obj_task else empty_int,
        worker=np.concatenate(obj_worker) if obj_worker else empty_int,
        label=np.asarray(obj_label, dtype=object),
        geometry=np.concatenate(geometry_parts) if geometry_parts else kind.empty(),
        cluster=np.concatenate(obj_cluster) if obj_cluster else empty_int,
    )
    layout = Layout(
        tasks=tasks,
        workers=workers,
        answer_task=task_code,
        answer_worker=worker_code,
        golden_task=np.asarray([t in golden for t in tasks], dtype=bool),
        cluster_task=np.concatenate(cluster_task) if cluster_task else empty_int,
        cluster_gold=np.concatenate(cluster_gold) if cluster_gold else empty_int,
        gold_geometry=np.concatenate(gold_parts) if gold_parts else kind.empty(),
        areas=area_per_task,
    )
    return objects, layout


def support(objects: Objects, layout: Layout, skills: FloatArray) -> FloatArray:
    """Per cluster: skill of its drawers over the skill of everyone who answered its item."""
    answered = np.bincount(layout.answer_task, skills[layout.answer_worker], minlength=len(layout.tasks))
    drew = np.bincount(objects.cluster, skills[objects.worker], minlength=layout.n_clusters)
    total = answered[layout.cluster_task]
    return np.divide(drew, total, out=np.zeros(layout.n_clusters), where=total > 0)


def worker_skills(objects: Objects, layout: Layout, real: FloatArray, closeness: FloatArray) -> FloatArray:
    """F1 of each worker's objects against the real clusters times their mean similarity to
    the reference, every part shrunk towards the crowd's mean (see the module's docstring)."""
    n_workers = len(layout.workers)
    hit = real[objects.cluster]
    tp = np.bincount(objects.worker, hit, minlength=n_workers)
    drawn = np.bincount(objects.worker, minlength=n_workers).astype(np.float64)
    real_per_task = np.bincount(layout.cluster_task, real, minlength=len(layout.tasks))
    truths = np.bincount(layout.answer_worker, real_per_task[layout.answer_task], minlength=n_workers)
    close = np.bincount(objects.worker, hit * closeness, minlength=n_workers)
    mean_p = tp.sum() / drawn.sum() if drawn.sum() else 1.0
    mean_r = tp.sum() / truths.sum() if truths.sum() else 1.0
    mean_s = close.sum() / tp.sum() if tp.sum() else 1.0
    precision = (tp + PRIOR_WEIGHT * mean_p) / (drawn + PRIOR_WEIGHT)
    recall = (tp + PRIOR_WEIGHT * mean_r) / (truths + PRIOR_WEIGHT)
    similarity = (close + PRIOR_WEIGHT * mean_s) / (tp + PRIOR_WEIGHT)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n_workers), where=precision + recall > 0)
    return np.clip(f1 * similarity, 1e-3, 1.0)


def vote_labels(objects: Objects, n_clusters: int, skills: FloatArray, order: Sequence[str]) -> np.ndarray:
    """Per cluster the label with the most skill behind it; ties to the earliest in `order`
    (then alphabetical for labels the spec does not list)."""
    rank = {label: i for i, label in enumerate(order)}
    labels = pd.Index(sorted(set(objects.label.tolist()), key=lambda x: (rank.get(x, len(order)), x)))
    result = np.full(n_clusters, "", dtype=object)
    if not len(labels):
        return result
    code = labels.get_indexer(objects.label)
    weight = np.zeros((n_clusters, len(labels)))
    np.add.at(weight, (objects.cluster, code), skills[objects.worker])
    has = np.bincount(objects.cluster, minlength=n_clusters) > 0
    result[has] = np.asarray(labels, dtype=object)[weight[has].argmax(1)]
    return result


def fuse(kind: Kind, objects: Objects, layout: Layout, min_support: float, label_order: Sequence[str]) -> Fused:
    """Run the loop (module docstring) to a fixed point or `MAX_ITERATIONS`."""
    n_workers = len(layout.workers)
    skills = np.ones(n_workers)
    has_gold = layout.cluster_gold >= 0
    golden_cluster = layout.golden_task[layout.cluster_task]
    members = np.bincount(objects.cluster, minlength=layout.n_clusters)
    geometry = kind.fuse(objects, skills, layout.n_clusters)
    keep = np.zeros(layout.n_clusters, dtype=bool)
    for _ in range(MAX_ITERATIONS):
        backing = support(objects, layout, skills)
        new_keep = backing >= min_support - 1e-12
        real = np.where(golden_cluster, has_gold, new_keep).astype(np.float64)
        reference = geometry.copy()
        if has_gold.any():
            reference[has_gold] = take(layout.gold_geometry, layout.cluster_gold[has_gold])
        closeness = kind.paired(objects.geometry, take(reference, objects.cluster), layout.areas[objects.task])
        skills = worker_skills(objects, layout, real, closeness)
        kind.fit(objects, take(reference, objects.cluster), real[objects.cluster], has_gold[objects.cluster])
        new_geometry = kind.fuse(objects, skills, layout.n_clusters)
        settled = bool((new_keep == keep).all()) and _close(kind, geometry, new_geometry, layout, members)
        geometry, keep = new_geometry, new_keep
        if settled:
            break
    backing = support(objects, layout, skills)
    keep = (backing >= min_support - 1e-12) & (members > 0)
    labels = vote_labels(objects, layout.n_clusters, skills, label_order)
    return Fused(geometry=geometry, support=backing, keep=keep, label=labels, members=members, skills=skills)


def _close(kind: Kind, old: Any, new: Any, layout: Layout, members: IntArray) -> bool:
    """Has the fused geometry stopped moving (similarity above 0.999 for every cluster)?"""
    drawn = members > 0
    if not drawn.any():
        return True
    same = kind.paired(old[drawn], new[drawn], layout.areas[layout.cluster_task[drawn]])
    return bool((same > 0.999).all())
