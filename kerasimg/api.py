"""The Python API: what each CLI does, as one call with keyword arguments named like its flags."""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from pathlib import Path

import keras

import kerasimg.diagnose.evaluation  # noqa: F401  (registers the evaluation every run ends with)
from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.data.packed import DEFAULT_SHARD_MB
from kerasimg.errors import ArgumentError, UserError
from kerasimg.models import list_backbones, load_classifier
from kerasimg.models.registry import run_load_hooks
from kerasimg.serving.formats import DEFAULT_CALIBRATION_IMAGES, SAVEDMODEL, check_installed, parse_formats
from kerasimg.serving.zoo import DEFAULT_ZOO, Zoo
from kerasimg.training import FitConfig, FitResult, Run, load_run_config, multihost
from kerasimg.training import fit as fit_config
from kerasimg.training.kfold import FoldsResult, fit_folds

run_load_hooks()  # keras-hub's layers, so keras.saving.load_model reads a ViT model after `import kerasimg`


def fit(
    *,
    resume: str | os.PathLike | None = None,
    export: str | None = None,
    zoo: str | os.PathLike = DEFAULT_ZOO,
    format: str | list[str] = SAVEDMODEL,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    callbacks: list | None = None,
    log=print,
    **arguments,
) -> FitResult | FoldsResult:
    """Fine-tune a backbone; the keywords are ``python -m kerasimg.fit``'s flags (``batch_size=32``...).

    ``resume=RUN_DIR`` continues that run with its saved arguments (a larger
    ``epochs`` extends it; other arguments that differ are refused). ``export=NAME``
    exports the best model to ``zoo`` when done (``FitResult.exported``) in each of
    ``format`` (as ``export``'s; checked before training starts). ``config="run.toml"``
    reads the settings from that TOML file (``FitConfig.from_file``); keyword arguments
    given beside it override its values. ``data`` may be a pandas DataFrame of
    ``file``, ``label`` and optionally ``split`` (paths relative to ``image_dir``, default
    the working directory); it is kept as a CSV under ``$KERASIMG_HOME/frames``.
    ``folds=K`` trains K cross-validation runs and returns a ``FoldsResult`` (their
    results and each metric's mean and standard deviation). The README's "From Python"
    section has examples (a test runs them).
    """
    names = [f.name for f in dataclasses.fields(FitConfig)]
    unknown = sorted(set(arguments) - set(names))
    if unknown:
        raise UserError(
            f"Unknown arguments {unknown}; kerasimg.fit takes {', '.join(names)}, resume, export, zoo, "
            "format, calibration_images."
        )
    if _is_frame(arguments.get("data")):  # a pandas DataFrame: kept as a CSV that config.json can name
        from kerasimg.data.csv_labels import frame_to_csv
        from kerasimg.files import kerasimg_home

        image_dir = arguments.pop("image_dir", None)
        arguments["data"] = frame_to_csv(arguments["data"], image_dir, kerasimg_home() / "frames")
        log(f"The DataFrame's labels are kept as {arguments['data']} (recorded as the run's data).")
    config_file = arguments.pop("config", None)
    if config_file is not None and resume is not None:
        raise UserError(
            f"config starts a new run from a settings file, and resume continues {resume} with the "
            "settings saved in its config.json: give one of them (a larger epochs beside resume extends "
            f"the run). Received: config={config_file!r}, resume={resume!r}"
        )
    if export:  # the name, the formats and their converters are checked now, not after hours of training
        Zoo(zoo).model_dir(export)
        formats = parse_formats(format)
        check_installed(formats)
    if resume is not None:
        result = fit_config(_resumed(resume, arguments), resume=True, callbacks=callbacks, log=log)
    else:
        if config_file is None:
            config = FitConfig(**arguments)
        else:
            config = FitConfig.from_file(config_file, **arguments)
        if config.folds and config.fold is None:  # every fold, then the summary (FoldsResult)
            if export:
                raise UserError(
                    f"--folds trains {config.folds} models; export one fold's run afterwards (python -m "
                    f"kerasimg.export OUT/fold-N) or train on all the data without --folds. Received: "
                    f"export={export!r}"
                )
            return fit_folds(config, callbacks=callbacks, log=log)
        result = fit_config(config, callbacks=callbacks, log=log)
    if export and multihost.writes_run():  # one process of a multihost run exports
        from kerasimg.diagnose.report import write_run_report
        from kerasimg.serving.export import export_run

        result.exported = export_run(
            result.run_dir, export, zoo, formats=formats, calibration_images=calibration_images
        )
        write_run_report(result.run_dir, zoo)  # the page lists the export
    return result


def _is_frame(data) -> bool:
    """A pandas DataFrame (or anything like one), without importing pandas."""
    return hasattr(data, "columns") and hasattr(data, "to_csv")


def _resumed(run_dir, arguments: dict) -> FitConfig:
    """The run's saved configuration; in a multihost run, as process 0 (which keeps the run) reads it."""
    if keras.backend.backend() == "jax" and multihost.requested():
        multihost.start(arguments.get("connect_timeout", multihost.DEFAULT_CONNECT_TIMEOUT))
        saved = multihost.shared_or_raise(lambda: dataclasses.asdict(load_run_config(run_dir, **arguments)))
        return FitConfig(**saved)
    return load_run_config(run_dir, **arguments)


def load_model(path: str | os.PathLike) -> keras.Model:
    """A trained classifier from a run directory or a ``.keras`` file (always with ``safe_mode``)."""
    path = Path(path)
    if path.is_dir():
        run = Run(path)
        if not run.has_model:
            raise UserError(f"{path} holds no {run.model_path.name}: pass a run directory or a .keras file.")
        path = run.model_path
    if not path.exists():
        raise UserError(f"No such model file or run directory: {path}")
    return load_classifier(path)


def export(
    run_dir: str | os.PathLike,
    name: str | None = None,
    zoo: str | os.PathLike = DEFAULT_ZOO,
    *,
    allow_unfinished: bool = False,
    format: str | list[str] = SAVEDMODEL,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    tta: str = "none",
    precision: str = "auto",
) -> Path:
    """Export a run's best model to ``zoo/<name>/<next version>/`` (verified); returns that folder.

    ``format`` (``"savedmodel,onnx,litert,litert-fp16,litert-int8,openvino"`` or a list) adds
    ONNX, LiteRT and OpenVINO files beside the SavedModel, each checked against the Keras model
    on the run's images; int8 is calibrated on ``calibration_images`` training images.
    ``tta="flip"`` makes the SavedModel's signatures average each image's and its
    mirror's probabilities (twice the cost of a request; recorded in the zoo). ``precision``
    is what the files compute in: ``auto`` keeps the SavedModel float32 and serves the OpenVINO
    file in bfloat16 where the CPU has it and the top-1 agrees with float32 on 99.5% of the test
    images; ``bfloat16`` writes a bfloat16 SavedModel graph too (on a CPU with bfloat16 only).
    """
    from kerasimg.serving.export import export_run

    return export_run(
        run_dir,
        name,
        zoo,
        allow_unfinished=allow_unfinished,
        formats=format,
        calibration_images=calibration_images,
        tta=tta,
        precision=precision,
    )


def predict(
    model: str | os.PathLike,
    images: str | os.PathLike | list,
    *,
    top_k: int = 3,
    zoo: str | os.PathLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    batch_size: int = 32,
    format: str = SAVEDMODEL,
    precision: str = "auto",
) -> list[dict]:
    """Top-k classes per image from an exported model: a SavedModel folder or ``NAME[/VERSION]`` in ``zoo``.

    A ``zoo`` given explicitly wins over a same-named folder in the working directory; without
    one, ``saved_models`` is searched after the working directory.

    Each result is ``{"file", "top": [(class, score), ...]}``, or ``{"file", "error"}``
    for a file that could not be read. Files go ``batch_size`` per signature call.
    ``format`` runs that file of the version instead of the SavedModel (``"onnx"``,
    ``"litert"``, ``"litert-fp16"``, ``"litert-int8"``, ``"openvino"``), one file at a time;
    ``precision``: what the file computes in (``auto``: what its export chose); a SavedModel has
    one, and another is refused.
    """
    from kerasimg.serving.batch_predict import predict_files_batched
    from kerasimg.serving.predict import list_images, predict_files, resolve_model_dir
    from kerasimg.serving.runtimes import check_precision

    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ArgumentError("top_k", "must be a whole number of at least 1", top_k)
    check_precision(format, precision)  # before any file is listed
    single = isinstance(images, (str, os.PathLike, bytes, bytearray)) or hasattr(images, "__array__")
    targets = [images] if single or not hasattr(images, "__iter__") else list(images)
    for target in targets:
        if not isinstance(target, (str, os.PathLike)):
            # Bytes would be taken for a file name (and printed whole in the error).
            raise UserError(
                "images are paths of image files or folders; to predict an image held in memory (bytes, "
                "an array, a PIL image), save it to a file first. "
                f"Received: an image of type {type(target).__name__}"
            )
    files, model_dir = list_images([str(t) for t in targets]), resolve_model_dir(str(model), zoo)
    if format != SAVEDMODEL or batch_size == 1:
        return predict_files(model_dir, files, top_k, max_pixels, format=format, precision=precision)
    return predict_files_batched(model_dir, files, top_k, max_pixels, batch_size, precision)


def evaluate(
    run_dir: str | os.PathLike,
    *,
    data: str | None = None,
    split: str = "test",
    batch_size: int = 32,
    explain: bool = False,
    mistakes: int = 12,
    log=print,
) -> dict:
    """Predict a split of a run's data, or of ``data`` with its classes, as ``kerasimg.evaluate`` does."""
    from kerasimg.diagnose.evaluate_run import evaluate_run

    return evaluate_run(
        run_dir, data=data, split=split, batch_size=batch_size, explain=explain, mistakes=mistakes, log=log
    )


def audit(
    data: str = "scenes",
    *,
    backbone: str = "resnet50",
    weights: str = "imagenet",
    folds: int = 5,
    out: str | os.PathLike = "audit",
    image_size: int | None = None,
    epochs: int = 15,
    batch_size: int = 32,
    seed: int = 0,
    ranking: str = "self_confidence",
    max_distance: float | None = None,
    min_cosine: float | None = None,
    log=print,
):
    """Find likely mislabelled images, duplicates (within and across splits) and outliers in ``data``.

    Out-of-fold probabilities come from ``folds`` stratified folds: a logistic regression on
    the ``backbone``'s pretrained features, or with ``weights="none"`` a fit from scratch of
    ``epochs`` per fold. Confident learning ranks label issues; a perceptual hash (at most
    ``max_distance`` of its bits differing) and embedding cosine similarity (``min_cosine``)
    (off unless given) find near duplicates. Writes ``audit.csv``, ``label_ranking.csv``, ``audit.json`` and
    ``audit.html`` into ``out``; returns an ``AuditResult`` (``rows``, ``summary``).
    """
    from kerasimg.diagnose import audit_duplicates
    from kerasimg.diagnose.audit_run import audit_data

    return audit_data(
        data,
        backbone=backbone,
        weights=weights,
        folds=folds,
        out=out,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        ranking=ranking,
        max_distance=audit_duplicates.MAX_DISTANCE if max_distance is None else max_distance,
        min_cosine=min_cosine,
        log=log,
    )


def lr_find(
    data: str = "scenes",
    *,
    backbone: str = "resnet50",
    weights: str = "imagenet",
    image_size: int | None = None,
    batch_size: int = 32,
    recipe: str = "seed",
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    steps: int = 100,
    rule: str = "valley",
    out: str | os.PathLike = "lr_find",
    seed: int = 0,
    log=print,
):
    """The learning-rate range test on ``data``'s training split; returns an ``LrFinding``.

    The model is the one ``fit`` starts from: with pretrained ``weights`` only the head trains
    (the first phase of the default schedule), with ``weights="none"`` everything. ``recipe``
    chooses the optimizer and loss as ``fit``'s does. ``lr_find.png``, ``lr_find.csv`` and
    ``lr_find.json`` are written into ``out``; ``finding.suggestion`` is the rate ``rule`` reads.
    """
    from kerasimg.data import load_data
    from kerasimg.training.lr_finder import check_range, range_test, write_finding

    check_range(min_lr, max_lr, steps)
    labelled = load_data(data, seed=seed, verify="pipeline", log=log)
    finding = range_test(
        labelled,
        backbone=backbone,
        weights=weights,
        image_size=image_size,
        batch_size=batch_size,
        recipe=recipe,
        min_lr=min_lr,
        max_lr=max_lr,
        steps=steps,
        rule=rule,
        seed=seed,
        log=log,
    )
    write_finding(finding, out)
    return finding


def pack(
    data: str = "scenes",
    *,
    out: str | os.PathLike,
    val_split: float = 0.1,
    val_from: str = "train",
    seed: int = 0,
    verify: str = "pipeline",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    shard_mb: float = DEFAULT_SHARD_MB,
    force: bool = False,
    log=print,
):
    """Write ``data``'s splits into sharded TFRecord files and a ``manifest.json`` in ``out``.

    The splits are the ones ``fit(data=data, ...)`` resolves with the same ``val_split``,
    ``val_from``, ``seed`` and ``verify``; ``fit(data=out, ...)`` then reads the shards
    instead of the files. Each record holds an image file's bytes, its label, split and
    path; files that cannot be decoded (or exceed ``max_pixels``) are left out and listed
    in the manifest. Shards hold about ``shard_mb`` megabytes. A folder ``out`` that holds
    other files than an earlier pack is refused unless ``force``. Returns a ``PackResult``
    (``out``, ``manifest``, ``images``, ``shards``).
    """
    from kerasimg.data.pack_writer import pack_data

    return pack_data(
        data,
        out=out,
        val_split=val_split,
        val_from=val_from,
        seed=seed,
        verify=verify,
        max_pixels=max_pixels,
        shard_mb=shard_mb,
        force=force,
        log=log,
    )


def backbones() -> list[str]:
    """The registered backbone names (``python -m kerasimg.models list`` shows their facts)."""
    return list_backbones()


class _CallableModule(types.ModuleType):
    """A CLI module that is also its API function, so ``kerasimg.fit`` means one thing.

    ``kerasimg.fit`` is both the documented call and the ``python -m kerasimg.fit``
    module; once the module is imported, Python binds the package attribute to it,
    and calling it must still run the API function.
    """

    def __call__(self, *args, **kwargs):
        return self.__api__(*args, **kwargs)


def callable_module(module_name: str, function) -> None:
    """Make the imported module ``module_name`` callable as ``function`` (not when run as ``__main__``)."""
    if module_name != "__main__":
        module = sys.modules[module_name]
        module.__class__ = _CallableModule
        module.__api__ = function
