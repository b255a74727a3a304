"""What a phase trains on: the images, pooled backbone ``FEATURES`` or ``BOUNDARY`` activations.

A cache holds what the frozen layers compute before any phase trains them: pooled
features serve head-only phases before the backbone first trains, the activations at a
stage boundary (``boundary_cache``) every phase up to the first that unfreezes all of it.
Each source is registered by name and knows the model its phases fit, their datasets
and where the best epoch goes; ``PhaseData`` holds what they share and build once per
run (the image pipelines, the boundary cut, the caches' example order), and chooses a
phase's source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import keras

from kerasimg.data import LabelledData, image_dataset
from kerasimg.data.augment import FLIP_VIEWS, PLAIN_VIEW
from kerasimg.files import atomic_write
from kerasimg.models.batchnorm_folding import batchnorm_compute_model
from kerasimg.models.registry import BackboneSpec
from kerasimg.training import feature_cache
from kerasimg.training.boundary_cache import BoundarySplit, CutRefused, boundary_stage, split_at_stage
from kerasimg.training.config import ResolvedFit
from kerasimg.training.feature_cache import split_classifier
from kerasimg.training.run import Run
from kerasimg.training.schedules import ALL

IMAGES, FEATURES, BOUNDARY = "images", "features", "boundary"


@dataclass(frozen=True)
class PhaseTraining:
    """What a phase fits: the model that trains, its train and val datasets, and its checkpoint."""

    model: keras.Model
    train: object
    val: object
    checkpoint_path: Path
    weights_only: bool  # a cached phase checkpoints its head's weights; the classifier is written after


class PhaseSource(Protocol):
    name: str

    def note(self, data: PhaseData) -> str:
        """What the phase's log line adds about where it trains ("" for images)."""

    def training(self, data: PhaseData) -> PhaseTraining:
        """The model the phase fits and its datasets, after the phase set what trains."""

    def keep_best(self, data: PhaseData, training: PhaseTraining) -> None:
        """Write the classifier of the phase's new best epoch as ``model.keras`` if the checkpoint did not."""


_SOURCES: dict[str, PhaseSource] = {}


def register_source(name: str) -> Callable[[type], type]:
    """Class decorator: one instance of the class is the source called ``name``."""

    def register(cls: type) -> type:
        if name in _SOURCES:
            raise ValueError(f"A phase source named {name!r} is already registered.")
        cls.name = name
        _SOURCES[name] = cls()
        return cls

    return register


def get_source(name: str) -> PhaseSource:
    if name not in _SOURCES:
        raise ValueError(f"Unknown phase source; expected one of {sorted(_SOURCES)}. Received: {name!r}")
    return _SOURCES[name]


class PhaseData:
    """One run's training data for its phases, built when a phase first needs it and kept.

    ``cluster`` tells whether caches can be extracted and BatchNorm folded in this run's processes.
    """

    def __init__(
        self,
        resolved: ResolvedFit,
        run: Run,
        data: LabelledData,
        model: keras.Model,
        spec: BackboneSpec,
        batch_size: int,
        cluster,
        log=print,
    ):
        self.resolved, self.config, self.run = resolved, resolved.arguments, run
        self.data, self.model, self.spec, self.batch_size = data, model, spec, batch_size
        self.cluster, self.log = cluster, log
        # BatchNorm computed fast (frozen folded under mixed_bfloat16, training fused): the compute model
        # trains the same variables; its save() writes the original model's layers.
        self.computes_batchnorm = cluster.folds_batchnorm and self.config.fold_bn
        self._images = None  # the image pipelines
        self._cached: dict[str, PhaseTraining] = {}  # per cached source
        self._split: BoundarySplit | None | bool = None  # False: refused or not needed
        self._orders: dict = {}  # the cached datasets' shared example order, per split

    def source(self, index: int, phase) -> PhaseSource:
        """What ``phase`` trains on: a cache while the layers it holds stay frozen and one can be built."""
        phases = self.resolved.phases
        if phase.unfrozen == ALL or any(p.unfrozen == ALL for p in phases[:index]):
            return get_source(IMAGES)
        if not self.config.feature_cache:
            return get_source(IMAGES)
        if not self.cluster.extracts_caches:
            return get_source(IMAGES)
        if self.resolved.cached_views is None:
            self.log(
                f"--augment {self.resolved.recipe.augment} changes more than flips, so this phase trains "
                "on images rather than on cached features; --cache-views K caches K augmented views "
                "per image."
            )
            return get_source(IMAGES)
        if not phase.trains_backbone and not any(p.trains_backbone for p in phases[:index]):
            return get_source(FEATURES)
        return get_source(BOUNDARY if self.boundary_split() is not None else IMAGES)

    def image_pipelines(self) -> tuple:
        if self._images is None:
            config, size = self.config, self.resolved.image_size
            shard = self.cluster.input_shard(self.batch_size, self.log)  # a multihost process's own files
            self._images = (
                image_dataset(
                    self.data.train,
                    size,
                    self.batch_size,
                    training=True,
                    augment=self.resolved.recipe.augment,
                    seed=config.seed,
                    num_classes=self.label_depth(),
                    shard=shard,
                ),
                image_dataset(
                    self.data.val,
                    size,
                    self.batch_size,
                    training=False,
                    num_classes=self.label_depth(),
                    shard=shard,
                ),
            )
        return self._images

    def boundary_split(self) -> BoundarySplit | None:
        """The classifier cut below the lowest stage any cached phase trains; ``None`` (said once)
        when the backbone cannot be cut there or no phase trains part of it."""
        if self._split is None:
            stage = boundary_stage(self.resolved.phases, self.spec.stage_names)
            try:
                self._split = split_at_stage(self.model, self.spec, stage) if stage else False
            except CutRefused as refused:
                self.log(f"No boundary cache: {refused}; phases that train part of the backbone use images.")
                self._split = False
        return self._split or None

    def cached(self, source: _Cached) -> PhaseTraining:
        """The model ``source`` trains and its train/val datasets, extracted once and kept in the run."""
        if source.name not in self._cached:
            trained, caches = source.extract(self)
            if not self._orders:
                views, depth, seed = len(self.resolved.cached_views), self.label_depth(), self.config.seed
                self._orders = {
                    "train": feature_cache.view_order(
                        caches["train"].labels, views, training=True, seed=seed, num_classes=depth
                    ),
                    "val": feature_cache.view_order(
                        caches["val"].labels, 1, training=False, num_classes=depth
                    ),
                }
            train, val = (
                feature_cache.views_dataset(caches[s], self._orders[s], self.batch_size)
                for s in ("train", "val")
            )
            self._cached[source.name] = PhaseTraining(
                trained, train, val, self.run.head_weights_path, weights_only=True
            )
        return self._cached[source.name]

    def extract(self, model, extra: dict, what: str, from_caches: dict | None = None) -> dict:
        """``{"train": CachedViews, "val": ...}``: ``model`` applied to the train and val images, or
        to ``from_caches``; ``extra`` and the run's settings fix the model, the data and the views."""
        config, size, batch = self.config, self.resolved.image_size, self.batch_size
        identity = {
            "backbone": config.backbone,
            "weights": config.weights,
            "data": config.data,
            "precision": self.resolved.precision,
            "image_size": size,
            **extra,
        }
        views = self.resolved.cached_views
        if views not in (PLAIN_VIEW, FLIP_VIEWS):
            identity.update(augment=self.resolved.recipe.augment, seed=config.seed)
        caches = {}
        for split_name, data, data_views in (
            ("train", self.data.train, views),
            ("val", self.data.val, PLAIN_VIEW),
        ):
            batches = (
                feature_cache.cached_batches(from_caches[split_name], batch)
                if from_caches
                else feature_cache.image_views(
                    data, size, batch, data_views, self.resolved.recipe.augment, config.seed
                )
            )
            caches[split_name] = feature_cache.extract(
                model,
                batches,
                split=data,
                count=len(data) if hasattr(data, "__len__") else None,
                cache_dir=self.run.features_dir,
                name=split_name + ("-pooled" if from_caches else ""),
                identity={**identity, "views": data_views},
                log=self.log,
                what=what,
            )
        return caches

    def label_depth(self) -> int | None:
        """One-hot labels of this depth when the recipe needs them, else integer labels."""
        return self.data.num_classes if self.resolved.recipe.one_hot else None


@register_source(IMAGES)
class _Images:
    """The whole classifier on the image pipelines; the checkpoint writes ``model.keras`` itself."""

    def note(self, data: PhaseData) -> str:
        return ""

    def training(self, data: PhaseData) -> PhaseTraining:
        train, val = data.image_pipelines()
        model = data.model
        if data.computes_batchnorm:
            fold = data.resolved.precision == "mixed_bfloat16"
            model = batchnorm_compute_model(data.model, fold=fold, fuse=True)
        return PhaseTraining(model, train, val, data.run.model_path, weights_only=False)

    def keep_best(self, data: PhaseData, training: PhaseTraining) -> None:
        pass


class _Cached:
    """The classifier's top on cached activations: its best weights are checkpointed, then the classifier
    with them is written."""

    name: str

    def extract(self, data: PhaseData) -> tuple[keras.Model, dict]:
        """The model trained on the cache, and the cache (``PhaseData.extract``)."""
        raise NotImplementedError

    def training(self, data: PhaseData) -> PhaseTraining:
        return data.cached(self)

    def keep_best(self, data: PhaseData, training: PhaseTraining) -> None:
        if training.checkpoint_path.exists():
            _save_classifier_with_best_head(
                data.model, training.model, training.checkpoint_path, data.run.model_path
            )


@register_source(FEATURES)
class _Features(_Cached):
    """The head on pooled features. With a boundary split they are its ``pooled`` model applied to the
    cached boundary activations: one pass over the images serves both kinds of phase."""

    def note(self, data: PhaseData) -> str:
        return ", on cached features"

    def extract(self, data: PhaseData) -> tuple[keras.Model, dict]:
        split = data.boundary_split()
        if split is not None:
            caches = data.extract(
                split.pooled,
                {"boundary": split.stage, "pooled": True},
                f"pooled features from the cached inputs of {split.stage}",
                from_caches=_boundary_caches(data, split),
            )
        extractor, head = split_classifier(data.model)
        if split is None:
            caches = data.extract(extractor, {}, "backbone features")
        return head, caches


@register_source(BOUNDARY)
class _Boundary(_Cached):
    """The stages above the boundary split and the head, on the activations at the boundary."""

    def note(self, data: PhaseData) -> str:
        return f", on the cached inputs of {data.boundary_split().stage}"

    def extract(self, data: PhaseData) -> tuple[keras.Model, dict]:
        split = data.boundary_split()
        return split.top, _boundary_caches(data, split)


def _boundary_caches(data: PhaseData, split: BoundarySplit) -> dict:
    return data.extract(split.bottom, {"boundary": split.stage}, f"the inputs of {split.stage}")


def _save_classifier_with_best_head(model, head, head_weights: Path, target: Path) -> None:
    """Write the classifier with the best epoch's head to ``target``, then restore the latest head."""
    latest = [w.numpy() for w in head.weights]
    head.load_weights(head_weights)
    atomic_write(target, lambda tmp: model.save(tmp))
    for variable, value in zip(head.weights, latest):
        variable.assign(value)
