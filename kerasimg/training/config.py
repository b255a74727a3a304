"""A fit's arguments (``FitConfig``) and what they resolve to (``ResolvedFit``), checked up front.

``FitConfig`` holds the arguments exactly as given (the CLI flags, the keyword
arguments of ``kerasimg.fit``); it is never rewritten. ``FitConfig.resolve()``
checks every one of them and fills in what they imply (the image size, the phases
of the schedule, the learning rates, BatchNorm, the precision policy) into a frozen
``ResolvedFit``, so a bad value fails in milliseconds rather than after thousands of
files were decoded, and nothing downstream re-derives a value.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kerasimg.data.augment import PRESETS, parse_augment
from kerasimg.data.csv_labels import is_labels_csv
from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.data.exclude import DEFAULT_ISSUES, ISSUES
from kerasimg.data.sources import TASKS, VAL_FROM, VERIFY
from kerasimg.errors import ArgumentError, UserError
from kerasimg.models import get_backbone
from kerasimg.models.classifier import HEADS, MIN_IMAGE_SIZE
from kerasimg.models.registry import name_slug
from kerasimg.settings import check_types, schema, setting
from kerasimg.tomlfile import read_toml
from kerasimg.training.distribution import STRATEGIES
from kerasimg.training.layer_decay import stage_rates
from kerasimg.training.multihost import DEFAULT_CONNECT_TIMEOUT
from kerasimg.training.precision import PRECISIONS, resolve_precision
from kerasimg.training.recipe import (
    LR_SCHEDULES,
    OPTIMIZERS,
    RECIPE_SETTINGS,
    RECIPES,
    TTA_MODES,
    Recipe,
    resolve_recipe,
)
from kerasimg.training.schedules import Phase, parse_schedule
from kerasimg.training.trackers import TRACKERS

TRACKER_NAMES = tuple(TRACKERS)


@dataclass
class FitConfig:
    """Every argument of a run, as given; saved in ``config.json`` and read back by ``--resume``."""

    # Where the other values came from (FitConfig.from_file); recorded in config.json, never re-read.
    config: str | None = setting(
        None,
        "a TOML file of these settings, named as in a plan (batch_size = 16, no dashes); flags given "
        "beside it override its values; paths in it are relative to the working directory. "
        "Not with --resume, which keeps the run's own settings",
        metavar="TOML",
        path=True,
    )
    backbone: str = setting("resnet50", "a registered backbone (python -m kerasimg.models list)")
    data: str = setting(
        "scenes",
        "scenes[:TRAIN,TEST] (built-in demo), a folder, the Intel layout, a labels CSV "
        "(file,label[,split]; docs/data.md) or tfds:NAME",
        path=True,
    )
    image_dir: str | None = setting(
        None, "the folder a labels CSV's relative paths start from (default: the CSV's own)", path=True
    )
    task: str = setting(
        "single",
        "single: one class per image (softmax); multilabel: any number per image from a labels CSV's "
        "labels column (a;b), with sigmoid outputs, per-class thresholds chosen on validation and "
        "mAP (docs/data.md)",
        choices=TASKS,
    )
    weights: str = setting(
        "imagenet",
        "imagenet (fetched by Keras into $KERAS_HOME/models) | none | PATH to a weights file",
        path=True,
    )
    epochs: int = setting(10, "epochs in all, over every phase")
    batch_size: int = setting(32, "images per step")
    lr: float = setting(1e-3, "Adam learning rate")
    lr_find: bool = setting(
        False,
        "first run the learning-rate range test (as python -m kerasimg.lr_find) and train with the rate "
        "it suggests instead of --lr; the finding is kept in config.json and lr_find.png",
    )
    image_size: int | None = setting(None, "default: the backbone's own size")
    schedule: str = setting(
        "linear-probe",
        "linear-probe | last-block | gradual | full | probe-then-last:N,M | a spec such as "
        "'0:head,5:conv5,8:conv4' (epoch:deepest unfrozen stage); with --weights none, "
        "linear-probe becomes full",
    )
    unfreeze_every: int = setting(2, "epochs between unfreezing steps of --schedule gradual")
    finetune_lr: float | None = setting(
        None,
        "learning rate of phases that train backbone layers (default: lr/10 with "
        "pretrained weights, lr without)",
    )
    train_bn: bool = setting(
        False,
        "let BatchNorm layers of unfrozen stages train (default: inference mode; on with --weights none)",
    )
    feature_cache: bool = setting(
        True,
        "train partly or wholly frozen phases on images instead of cached features or "
        "stage-boundary activations",
    )
    # Frozen BatchNorm folded into the convolution under mixed_bfloat16, where it measured faster;
    # BatchNorm that trains through TensorFlow's fused kernel (models/fused_batchnorm.py).
    fold_bn: bool = setting(
        True,
        "compute BatchNorm with Keras's own layer: frozen BatchNorm not folded into the convolution "
        "before it under mixed_bfloat16, BatchNorm that trains not run by TensorFlow's fused kernel "
        "(the saved model is the same either way)",
    )
    cache_views: int | None = setting(
        None,
        "with augmentation beyond flips (not mixup/cutmix), cache K augmented views per training "
        "image and draw one per epoch (default: such phases train on images)",
        metavar="K",
    )
    recipe: str = setting(
        "seed",
        "seed: the ported recipe (flip, Adam, constant lr); modern: light augmentation, label "
        "smoothing 0.1, AdamW (weight decay 0.05), 1 warm-up epoch, cosine decay, flip TTA. The flags "
        "below override it",
        choices=RECIPES,
    )
    # None: the recipe's value (kerasimg.training.recipe.RECIPES).
    augment: str | None = setting(
        None,
        f"a preset ({', '.join(PRESETS)}) or a list such as "
        "rrc,flip,randaugment:2:9,mixup:0.2,cutmix:1.0,erasing:0.25 (default: the recipe's)",
    )
    label_smoothing: float | None = setting(None, "0 to 1 (default: the recipe's)")
    optimizer: str | None = setting(None, "default: the recipe's", choices=OPTIMIZERS)
    weight_decay: float | None = setting(
        None, "decoupled weight decay (adamw, sgd), never on biases, norms and embeddings"
    )
    warmup_epochs: float | None = setting(None, "linear warm-up at the start of every phase")
    lr_schedule: str | None = setting(
        None,
        "per phase, after the warm-up (the lr of every epoch is history.csv's lr column)",
        choices=LR_SCHEDULES,
    )
    ema: float | None = setting(
        None, "EMA decay of the weights (e.g. 0.999); the EMA weights are validated, saved and exported"
    )
    grad_accum: int | None = setting(None, "accumulate gradients over N batches")
    early_stop: int | None = setting(
        None,
        "end a phase after PATIENCE epochs without a better val accuracy; the next phase still runs",
        metavar="PATIENCE",
    )
    class_weight: str | None = setting(
        None, "none, auto (inverse class frequency, normalised) or a JSON file {class: weight}", path=True
    )
    tta: str | None = setting(
        None,
        "flip: evaluate on the mean of each test image's and its mirror's probabilities",
        choices=TTA_MODES,
    )
    layer_decay: float | None = setting(
        None,
        "each backbone stage trains at F^k of the head's rate, k stages below it (default: the recipe's, 1)",
        metavar="F",
    )
    dropout: float = setting(0.2, "dropout rate before the output layer")
    head: str = setting(
        "linear", "linear, or mlp (Dense-GELU-Dropout-Dense, the ported ViT head)", choices=HEADS
    )
    val_split: float = setting(0.1, "fraction of each class carved from train for validation")
    val_from: str = setting(
        "train", "'test' validates on the test split, as the ported work did", choices=VAL_FROM
    )
    folds: int | None = setting(
        None,
        "k-fold cross-validation: K runs in OUT/fold-1 .. fold-K, each validating on one of K stratified "
        "folds of train and validation together, all tested on the same held-out test split; "
        "folds.json and folds.csv give each metric's mean and standard deviation (docs/training.md)",
        metavar="K",
    )
    fold: int | None = setting(
        None, "with --folds: train only fold N (1..K); each fold's run records its own", metavar="N"
    )
    seed: int = setting(0, "seeds splits, shuffling, augmentation and initialisation")
    precision: str = setting(
        "float32",
        "auto: mixed_bfloat16 on GPUs of compute capability 8+ and on CPUs with AMX/AVX512-BF16 "
        "where it was measured faster, mixed_float16 (loss scaled) on GPUs of capability 7.x; "
        "float32 otherwise",
        choices=PRECISIONS,
    )
    strategy: str = setting(
        "none",
        "mirrored: MirroredStrategy over all local GPUs (--batch-size per replica); auto: when >1 GPU; "
        "multihost: Keras's DataParallel on JAX over every device of every process named by "
        "KERAS_DISTRIBUTION_* (docs/multihost.md)",
        choices=STRATEGIES,
    )
    connect_timeout: float = setting(
        DEFAULT_CONNECT_TIMEOUT,
        "multihost: how long a process waits for the others to join before it stops with one line "
        "(set per launch, not kept by --resume)",
        metavar="SECONDS",
    )
    tracker: str = setting(
        "none",
        "log parameters, per-epoch metrics, final metrics and the run's files to an experiment tracker "
        "as well: mlflow (MLFLOW_TRACKING_URI, else MLflow's default store) or wandb (after wandb login, "
        "or WANDB_MODE=offline into the run folder); docs/tracking.md",
        choices=TRACKER_NAMES,
    )
    max_pixels: int = setting(
        DEFAULT_MAX_PIXELS,
        "skip images whose header claims more pixels than this (decompression bombs); "
        "the default is Pillow's limit, so large phone photos pass",
    )
    verify: str = setting(
        "pipeline",
        "pipeline: skip unreadable images as training meets them, so it starts at once; "
        "full: check every file before training (verdicts are kept)",
        choices=VERIFY,
    )
    # An audit.csv (python -m kerasimg.audit): its files with these issues are left out of training.
    exclude: str | None = setting(None, "leave out files an audit flagged", metavar="AUDIT_CSV", path=True)
    exclude_issues: str = setting(DEFAULT_ISSUES, "issues --exclude drops: label, duplicate, outlier")
    out: str | None = setting(None, "run directory (default runs/<date>-<backbone>-<data>/)", path=True)

    def __post_init__(self) -> None:
        # A keyword argument of the wrong type is refused here, as the CLI's parser refuses a
        # flag, before a run directory or config.json exists (epochs=1.5 or True would train).
        check_types(self)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides) -> FitConfig:
        """The settings in the TOML file ``path``, with ``overrides`` (the flags given beside it) on top.

        The keys are ``FitConfig``'s fields, as in a plan's ``[defaults]``; ``config``
        records ``path``. A missing file, bad TOML, an unknown key (the closest one is
        suggested), a plan's own key, a wrong type or a bad value from the file is one
        ``UserError`` naming the file, the line and the key; a bad override is the
        ``ArgumentError`` it would be without a file.
        """
        if not isinstance(path, str | os.PathLike):
            raise ArgumentError("config", "must be the path of a TOML file", path)
        file, keys = read_toml(path, "config file"), schema(cls, exclude=("config",))
        for key in file.data:
            if key in PLAN_KEYS and key not in keys:
                raise file.error(
                    f"{key!r} belongs in a plan (python -m kerasimg.compare --plan FILE); a config file "
                    f"holds one run's settings at the top level, such as epochs = 5. Received: {key}",
                    key,
                )
        values = file.check(file.data, keys)
        config = cls(**{**values, **overrides, "config": os.fspath(path)})
        try:
            config.validate()
        except UserError as error:
            named = getattr(error, "argument", None) or _received(error)
            if named in values and named not in overrides:
                raise file.error(str(error), named) from None
            raise
        return config

    def validate(self) -> None:
        """Check every argument (``resolve`` without keeping its result)."""
        self.resolve()

    def resolve(self) -> ResolvedFit:
        """Check every argument and fill in what it implies; raises ``ArgumentError`` naming the value."""
        spec = get_backbone(self.backbone)
        for name in ("epochs", "batch_size", "unfreeze_every", "max_pixels"):
            if getattr(self, name) < 1:
                raise ArgumentError(name, "must be at least 1", getattr(self, name))
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            raise ArgumentError(
                "image_size",
                f"must be at least {MIN_IMAGE_SIZE} pixels (or left out for the backbone's own size)",
                self.image_size,
            )
        if self.tracker not in TRACKER_NAMES:
            raise ArgumentError("tracker", f"must be one of {', '.join(TRACKER_NAMES)}", self.tracker)
        if not self.connect_timeout > 0:
            raise ArgumentError("connect_timeout", "must be positive (seconds)", self.connect_timeout)
        if not self.lr > 0:
            raise ArgumentError("lr", "must be positive", self.lr)
        if self.lr_find and self.strategy == "multihost":  # each process would ramp on its own
            raise ArgumentError("lr_find", "runs on one process; find the rate first, then pass lr", True)
        if self.finetune_lr is not None and not self.finetune_lr > 0:
            raise ArgumentError("finetune_lr", "must be positive", self.finetune_lr)
        if not 0 <= self.dropout < 1:
            raise ArgumentError("dropout", "must be in [0, 1)", self.dropout)
        if self.val_from == "train" and not 0 < self.val_split < 1:
            raise ArgumentError("val_split", "must be between 0 and 1", self.val_split)
        if self.folds is not None:
            if self.folds < 2:
                raise ArgumentError("folds", "must be at least 2", self.folds)
            if self.val_from == "test":
                raise ArgumentError(
                    "folds", "validates on each fold in turn, so not with val_from test", self.folds
                )
            if self.fold is not None and not 1 <= self.fold <= self.folds:
                raise ArgumentError("fold", f"must be between 1 and folds ({self.folds})", self.fold)
        elif self.fold is not None:
            raise ArgumentError("fold", "picks one of --folds K; give folds too", self.fold)
        if self.task not in TASKS:
            raise ArgumentError("task", f"must be one of {', '.join(TASKS)}", self.task)
        if self.task == "multilabel":
            if not is_labels_csv(self.data):
                raise ArgumentError(
                    "task",
                    "multilabel reads a labels CSV with a labels column (file,labels[,split], classes "
                    "separated by ;); folders and datasets give one class per image",
                    self.task,
                )
            if self.folds is not None:
                raise ArgumentError("folds", "is for single-label runs, not with task multilabel", self.folds)
        if self.image_dir is not None and not is_labels_csv(self.data):
            raise ArgumentError(
                "image_dir", "roots the paths of a labels CSV; data is not a .csv", self.image_dir
            )
        if self.exclude is not None and not Path(self.exclude).is_file():
            raise ArgumentError("exclude", "must be an audit.csv that kerasimg.audit wrote", self.exclude)
        if not set(self.exclude_issues.split(",")) <= set(ISSUES):
            raise ArgumentError(
                "exclude_issues",
                f"must be a comma-separated list of {', '.join(ISSUES)}",
                self.exclude_issues,
            )
        recipe = resolve_recipe(self.recipe, **{k: getattr(self, k) for k in RECIPE_SETTINGS})
        if self.task == "multilabel":
            if recipe.class_weight != "none":  # Keras weighs a row of several classes by its first only
                raise ArgumentError(
                    "class_weight",
                    "weighs one class per image, not with task multilabel",
                    recipe.class_weight,
                )
            if recipe.tta != "none":
                raise ArgumentError(
                    "tta", "is evaluated for single-label runs, not with task multilabel", recipe.tta
                )
        cached_views = self._cached_views(recipe.augment)
        for name, choices in (
            ("head", HEADS),
            ("val_from", VAL_FROM),
            ("strategy", STRATEGIES),
            ("verify", VERIFY),
        ):
            if getattr(self, name) not in choices:
                raise ArgumentError(name, f"must be one of {', '.join(choices)}", getattr(self, name))
        pretrained = self.weights != "none"
        notes = []
        schedule = self.schedule
        if not pretrained and schedule == "linear-probe":
            notes.append(
                "--weights none: a linear probe would train a head on random features; using --schedule full."
            )
            schedule = "full"
        # With random weights there are no pretrained features or BatchNorm statistics to protect.
        finetune_lr = self.finetune_lr or (self.lr / 10 if pretrained else self.lr)
        phases = parse_schedule(
            schedule,
            spec.stage_names,
            self.epochs,
            lr=self.lr,
            finetune_lr=finetune_lr,
            unfreeze_every=self.unfreeze_every,
        )
        return ResolvedFit(
            arguments=self,
            schedule=schedule,
            epochs=phases[-1].end,
            phases=tuple(phases),
            image_size=int(spec.image_size if self.image_size is None else self.image_size),
            finetune_lr=finetune_lr,
            train_bn=self.train_bn or not pretrained,
            precision=resolve_precision(self.precision, self.backbone),
            recipe=recipe,
            cached_views=cached_views,
            notes=tuple(notes),
            stage_names=tuple(spec.stage_names),
        )

    def _cached_views(self, augment: str) -> tuple[str, ...] | None:
        """The views per training image that the caches hold; ``None``: phases train on images."""
        augmentation = parse_augment(augment)
        if self.cache_views is None:
            return augmentation.cached_views if self.feature_cache else None
        if self.cache_views < 1:
            raise ArgumentError("cache_views", "must be at least 1", self.cache_views)
        if augmentation.cached_views is not None:
            raise ArgumentError(
                "cache_views",
                f"is for augmentation beyond flips; augment {augment!r} is cached exactly "
                f"({len(augmentation.cached_views)} view(s) per image) without it",
                self.cache_views,
            )
        if augmentation.mixes_labels:
            raise ArgumentError(
                "cache_views",
                f"cannot cache augment {augment!r}: mixup and cutmix mix pairs of images drawn anew "
                "in every batch, which fixed cached views cannot do; drop them from the augmentation "
                "or leave cache_views out to train on images",
                self.cache_views,
            )
        if not self.feature_cache:
            raise ArgumentError(
                "cache_views", "needs the caches, which feature_cache=False turns off", self.cache_views
            )
        return augmentation.views_to_cache(self.cache_views)


@dataclass(frozen=True)
class ResolvedFit:
    """What a ``FitConfig`` means, fixed before the run starts; ``config.json``'s ``resolved`` part."""

    arguments: FitConfig
    schedule: str
    epochs: int
    phases: tuple[Phase, ...]
    image_size: int
    finetune_lr: float
    train_bn: bool
    precision: str
    recipe: Recipe = Recipe()
    # The views per training image the feature and boundary caches hold (None: no cache).
    cached_views: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()
    stage_names: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "schedule": self.schedule,
            "epochs": self.epochs,
            "phases": [
                {**p.to_json(), "stage_lr": stage_rates(p, self.stage_names, self.recipe.layer_decay)}
                for p in self.phases
            ],
            "image_size": self.image_size,
            "finetune_lr": self.finetune_lr,
            "train_bn": self.train_bn,
            "precision": self.precision,
            "recipe": self.recipe.to_json(),
            "cached_views": list(self.cached_views) if self.cached_views else None,
        }

    def run_dir(self, data_name: str, root: str | Path = "runs") -> Path:
        """``--out``, or ``runs/<date>-<backbone>-<data>/`` with ``-2``, ``-3``... when taken."""
        if self.arguments.out:
            return Path(self.arguments.out)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(root) / f"{stamp}-{name_slug(self.arguments.backbone)}-{data_name}"
        candidate, n = base, 2
        while candidate.exists():
            candidate, n = Path(f"{base}-{n}"), n + 1
        return candidate


# A plan's own keys, which a config file (one run's settings) cannot hold.
PLAN_KEYS = ("name", "description", "defaults", "quick", "experiment", "reported")
_RECEIVED = re.compile(r"Received: (\w+)=")


def _received(error: UserError) -> str | None:
    """The argument an error names in its ``Received: key=`` part."""
    match = _RECEIVED.search(str(error))
    return match and match.group(1)


def arguments_of(saved: dict) -> FitConfig:
    """The ``FitConfig`` a ``config.json`` records (both its current and its first format)."""
    names = {f.name for f in dataclasses.fields(FitConfig)}
    return FitConfig(**{k: v for k, v in saved.get("arguments", saved).items() if k in names})
