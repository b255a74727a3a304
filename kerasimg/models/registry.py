"""The one list of backbones.

Like timm's ``register_model``: a decorator on a small factory function whose
name is the CLI name. Each entry records what the rest of the code must not
guess: default image size, preprocessing, output kind, feature width, the ordered
stages that freezing schedules unfreeze, and where pretrained weights come from.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import keras

from kerasimg.errors import UserError

PREPROCESSING_MODES = ("caffe", "torch", "tf", "none")


@dataclass(frozen=True)
class PretrainedWeights:
    """A weights file that ``keras.utils.get_file`` fetches into ``$KERAS_HOME/models``."""

    file_name: str
    origin: str
    file_hash: str | None = None


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is, beyond the layers its factory builds.

    Attributes:
        name: The registry and CLI name.
        factory: ``factory(input_shape, weights)`` returns a ``keras.Model`` named
            "backbone" that maps raw preprocessed images to features; ``weights`` is
            ``None`` or a local weights-file path.
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

    @property
    def stage_names(self) -> list[str]:
        return [name for name, _ in self.stages]

    def build(self, input_shape: tuple[int, int, int], weights: str | None = None) -> keras.Model:
        return self.factory(input_shape=input_shape, weights=weights)


_REGISTRY: dict[str, BackboneSpec] = {}
# Functions that may register a parametrised name on first use (e.g. efficientnet_w1.2_d1.4_r300).
_RESOLVERS: list[Callable[[str], bool]] = []


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
) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    """Register the decorated factory under its function name (or ``name``)."""
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING_MODES}. Received: {preprocessing!r}")
    if len(stages) < 2:
        raise ValueError(f"A backbone needs at least two stages to freeze by. Received: {stages}")

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
        )
        return factory

    return decorator


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
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UserError(
        f"Unknown backbone.{hint} Choose one of: {', '.join(_REGISTRY)} "
        f"(`python -m kerasimg.models list`). Received: backbone={name!r}"
    )
