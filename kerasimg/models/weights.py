"""Turn a ``--weights`` value into a local file, or fail in one clear sentence."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import keras

from kerasimg.errors import UserError, WeightsUnavailableError
from kerasimg.models.registry import BackboneSpec, PretrainedWeights, all_weights_sources


def keras_models_dir() -> Path:
    """Where ``keras.utils.get_file(cache_subdir="models")`` keeps downloads."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def resolve_weights(spec: BackboneSpec, weights: str | None) -> str | None:
    """Map ``imagenet`` | ``none`` | PATH to ``None`` or an existing local weights file.

    A value one of the spec's ``weights_sources`` claims (a keras-hub preset, a PyTorch
    checkpoint) is that source's to resolve; one that only another backbone's source
    claims is refused, naming who takes it.

    ``imagenet`` is fetched with ``keras.utils.get_file`` into ``$KERAS_HOME/models``
    (a cached copy is used without touching the network). A cached copy whose checksum
    differs is reported as such and left in place: ``get_file`` would otherwise try to
    download over it, and offline it deletes the file and blames the network.
    """
    if weights is None or str(weights).lower() == "none":
        return None
    value = str(weights)
    for source in spec.weights_sources:
        if source.claims(value):
            return source.resolve(value)
    for source in all_weights_sources():
        if source.claims(value):
            raise UserError(
                f"{spec.name} takes a weights file; {source.label} are for {source.owners}. "
                f"Received: weights={value!r}"
            )
    if weights == "imagenet":
        for source in spec.weights_sources:  # a preset's own weights are what "pretrained" means there
            if spec.pretrained is None and source.pretrained_default is not None:
                return source.resolve(source.pretrained_default)
        if spec.pretrained is None:
            hint = "".join(f" or {source.usage}" for source in spec.weights_sources)
            raise UserError(
                f"Backbone {spec.name!r} has no ImageNet weights to fetch; pass --weights none "
                f"or --weights PATH{hint}. Received: weights='imagenet'"
            )
        wanted = spec.pretrained
        check_cached_file(spec.name, wanted)
        try:
            return keras.utils.get_file(
                wanted.file_name, wanted.origin, cache_subdir="models", file_hash=wanted.file_hash
            )
        except Exception as error:  # get_file raises a bare Exception on URL failures.
            raise WeightsUnavailableError(
                f"Could not get ImageNet weights for {spec.name}: {wanted.file_name} is not in "
                f"{keras_models_dir()} and downloading it from {wanted.origin} failed "
                f"({_first_line(error)}); put the file there, or pass --weights PATH for a local "
                f"weights file or --weights none to train from scratch."
            ) from None
    return existing_file(value)


def existing_file(weights: str) -> str:
    """``weights`` as a path to an existing file, or the one-sentence error."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(
            f"The weights file does not exist. Pass --weights imagenet, none or the path to a "
            f"weights file. Received: weights={str(weights)!r}"
        )
    return str(path)


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """The hex digest of a file, read in 1 MiB blocks (weights files run to hundreds of MB)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_algorithm(file_hash: str) -> str:
    """The algorithm ``keras.utils.get_file(hash_algorithm="auto")`` picks: 64 hex digits are SHA-256."""
    return "sha256" if len(file_hash) == 64 else "md5"


def check_cached_file(backbone: str, wanted: PretrainedWeights) -> None:
    """Raise ``WeightsUnavailableError`` if the cached weights file exists but its checksum differs.

    A truncated or wrong file placed by hand is the common case offline; naming it and
    both checksums tells the user what to replace, where ``get_file`` would report a
    failed download (and delete the file).
    """
    path = keras_models_dir() / wanted.file_name
    if wanted.file_hash is None or not path.is_file():
        return
    algorithm = hash_algorithm(wanted.file_hash)
    actual = file_digest(path, algorithm)
    if actual == wanted.file_hash.lower():
        return
    name = "SHA-256" if algorithm == "sha256" else "MD5"
    raise WeightsUnavailableError(
        f"Could not use ImageNet weights for {backbone}: found {path} ({path.stat().st_size:,} bytes) "
        f"but its checksum differs (expected {name} {wanted.file_hash[:12]}..., actual {actual[:12]}...), "
        f"so it is incomplete or a different file. Delete it and rerun with network access to "
        f"download it again, or replace it with a complete copy of {wanted.origin}; or pass "
        f"--weights PATH for another weights file or --weights none to train from scratch."
    )


def _first_line(error: Exception) -> str:
    """The gist of an exception: its last line, without the URL that get_file repeats."""
    text = str(error).strip().splitlines()
    gist = text[-1] if text else type(error).__name__
    return gist.rsplit(" -- ", 1)[-1][:200]
