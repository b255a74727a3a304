"""The one list of backbones.

Like timm's ``register_model``: a decorator on a small factory function whose
name is the CLI name. Each entry records what the rest of the code must not
guess: default image size, preprocessing, output kind and pooling, feature width,
the ordered stages that freezing schedules unfreeze, where pretrained weights come
from and what other ``--weights`` values it loads (its weights sources), and what
pixels each weight source expects (its pretrained configs). Generic code asks the
spec, never a family module, so adding a family touches only its own file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

import keras

from kerasimg.errors import UserError
from kerasimg.models.pooling import POOLINGS
from kerasimg.models.pretrained import (
    PretrainedConfig,
    PretrainedWeights,
    WeightsSource,
    config_for_preprocessing,
)

PREPROCESSING_MODES = ("caffe", "torch", "tf", "none")
# The pretrained config used when no weight source has its own.
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is, beyond the layers its factory builds.

    Attributes:
        name: The registry and CLI name.
        factory: ``factory(input_shape, weights)`` returns a ``keras.Model`` named
            "backbone" that maps raw preprocessed images to features; ``weights`` is
            ``None``, a local weights-file path, or what one of ``weights_sources`` resolved.
        image_size: The input size its pretrained weights were trained at.
        preprocessing: One of ``PREPROCESSING_MODES``; "none" when the model scales inside.
        feature_dim: Channels of the feature map (or width of the tokens).
        stages: Ordered ``(stage name, layer-name prefix)`` pairs. A stage ends at the
            last layer whose name starts with its prefix; the final stage takes the rest.
        pretrained: The ImageNet weights, or ``None`` when there are none to fetch.
        output: "feature_map" ([B, H, W, C]) or "tokens" ([B, T, C]).
        family: A grouping for docs and tests ("resnet", "efficientnet", ...).
        stage_fn: For backbones whose stages live inside one layer (keras-hub's ViT
            encoder), ``stage_fn(backbone)`` returns ``{stage: [layers]}`` itself.
        pooling: How the classifier pools the output: a name in ``pooling.POOLINGS``
            ("avg", "token") or ``pool(name) -> keras layer``.
        weights_sources: The ``--weights`` kinds the factory loads besides a Keras weights
            file and ``pretrained`` (keras-hub presets, PyTorch checkpoints).
        pretrained_cfgs: ``(source, PretrainedConfig)`` pairs; ``"default"`` is always there.
        explain_split: Where Grad-CAM looks. ``None``: the backbone's output, the last
            feature map of a ConvNet. Otherwise ``explain_split(backbone)`` returns
            ``(front, back)`` callables with ``back(front(x)) == backbone(x)``; Grad-CAM
            weighs ``front``'s output (a feature map, or tokens on a square patch grid).
    """

    name: str
    factory: Callable[..., keras.Model]
    image_size: int
    preprocessing: str
    feature_dim: int
    stages: tuple[tuple[str, str], ...]
    pretrained: PretrainedWeights | None = None
    output: str = "feature_map"
    family: str = ""
    stage_fn: Callable[[keras.Model], dict] | None = None
    pooling: str | Callable[[str], keras.layers.Layer] = "avg"
    weights_sources: tuple[WeightsSource, ...] = ()
    pretrained_cfgs: tuple[tuple[str, PretrainedConfig], ...] = ()
    explain_split: Callable[[keras.Model], tuple[Callable, Callable]] | None = None

    @property
    def stage_names(self) -> list[str]:
        return [name for name, _ in self.stages]

    def pretrained_cfg(self, source: str = DEFAULT_SOURCE) -> PretrainedConfig:
        """The input the weights of ``source`` expect; the default config if it has none."""
        configs = dict(self.pretrained_cfgs)
        if source in configs:
            return configs[source]
        return configs.get(DEFAULT_SOURCE) or config_for_preprocessing(self.preprocessing, self.image_size)

    def build(self, input_shape: tuple[int, int, int], weights: str | None = None) -> keras.Model:
        return self.factory(input_shape=input_shape, weights=weights)


_REGISTRY: dict[str, BackboneSpec] = {}
# Functions that may register a parametrised name on first use (e.g. efficientnet_w1.2_d1.4_r300).
_RESOLVERS: list[Callable[[str], bool]] = []


# Functions a family needs run before a saved model loads (keras-hub registering its layers).
_LOAD_HOOKS: list[Callable[[], None]] = []


def register_load_hook(hook: Callable[[], None]) -> Callable[[], None]:
    """Add ``hook()``, run by ``run_load_hooks`` before ``keras.saving.load_model``.

    A saved classifier does not say which family built it, so every family that needs
    its custom objects registered (and imports them lazily) registers a hook.
    """
    _LOAD_HOOKS.append(hook)
    return hook


def run_load_hooks() -> None:
    """Prepare every family's custom objects for deserialisation."""
    for hook in _LOAD_HOOKS:
        hook()


def register_resolver(resolver: Callable[[str], bool]) -> Callable[[str], bool]:
    """Add ``resolver(name) -> bool`` that registers ``name`` if it is one of its family's."""
    _RESOLVERS.append(resolver)
    return resolver


def register_backbone(
    *,
    image_size: int,
    preprocessing: str,
    feature_dim: int,
    stages: tuple[tuple[str, str], ...],
    pretrained: PretrainedWeights | None = None,
    output: str = "feature_map",
    family: str = "",
    name: str | None = None,
    stage_fn: Callable[[keras.Model], dict] | None = None,
    pooling: str | Callable[[str], keras.layers.Layer] = "avg",
    weights_sources: tuple[WeightsSource, ...] = (),
    pretrained_cfg: dict[str, PretrainedConfig] | None = None,
    explain_split: Callable[[keras.Model], tuple[Callable, Callable]] | None = None,
) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    """Register the decorated factory under its function name (or ``name``).

    ``pretrained_cfg`` maps weight sources ("default", "imagenet", a ``WeightsSource``
    name) to their ``PretrainedConfig``; "default" is derived from ``preprocessing``
    and ``image_size`` unless given.
    """
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING_MODES}. Received: {preprocessing!r}")
    if len(stages) < 2:
        raise ValueError(f"A backbone needs at least two stages to freeze by. Received: {stages}")
    if not callable(pooling) and pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {tuple(POOLINGS)} or a callable. Received: {pooling!r}")
    configs = {DEFAULT_SOURCE: config_for_preprocessing(preprocessing, image_size), **(pretrained_cfg or {})}

    def decorator(factory: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        key = name or factory.__name__
        if key in _REGISTRY:
            raise ValueError(f"A backbone named {key!r} is already registered.")
        _REGISTRY[key] = BackboneSpec(
            name=key,
            factory=factory,
            image_size=image_size,
            preprocessing=preprocessing,
            feature_dim=feature_dim,
            stages=tuple(stages),
            pretrained=pretrained,
            output=output,
            family=family,
            stage_fn=stage_fn,
            pooling=pooling,
            weights_sources=tuple(weights_sources),
            pretrained_cfgs=tuple(configs.items()),
            explain_split=explain_split,
        )
        return factory

    return decorator


def all_weights_sources() -> list[WeightsSource]:
    """Every registered backbone's weights sources, once each, so a foreign one can be named."""
    sources: dict[str, WeightsSource] = {}
    for spec in _REGISTRY.values():
        for source in spec.weights_sources:
            sources.setdefault(source.name, source)
    return list(sources.values())


def name_slug(name: str) -> str:
    """``name`` with every character a path or a Keras layer name refuses ("/", ":") made "_".

    A ``hub:PATH`` backbone's name holds both; run folders and model names use this.
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def is_registered(name: str) -> bool:
    """Whether ``name`` is registered already (without running the resolvers)."""
    return name in _REGISTRY


def list_backbones() -> list[str]:
    """Registered names, in registration order."""
    return list(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    """The spec for ``name``; an unknown name raises and lists the close matches."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if any(resolver(name) for resolver in _RESOLVERS) and name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise UserError(
        f"Unknown backbone.{hint} `kerasimg models list` shows all {len(_REGISTRY)} with their size "
        f"and accuracy (or hub:PRESET for a keras-hub preset). Received: backbone={name!r}"
    )
