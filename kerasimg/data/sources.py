"""Resolve ``--data`` into labelled train/validation/test splits.

Accepted values:

1. a folder with one subfolder per class (or ``train/`` and ``test/``, optionally
   ``val/``, each with class subfolders);
2. the Intel Image Classification layout, detected automatically:
   ``seg_train[/seg_train]/<class>/``, ``seg_test[/seg_test]/<class>/`` and the
   unlabelled ``seg_pred[/seg_pred]/``;
3. ``tfds:NAME[/CONFIG]``, any TFDS image-classification dataset;
4. ``scenes[:TRAIN,TEST]``, the built-in demo set (``kerasimg.data.scenes``);
5. a labels CSV (``file,label[,split]``, ``kerasimg.data.csv_labels``), paths relative to it
   or to ``image_dir``;
6. a folder ``python -m kerasimg.pack`` wrote, found by its manifest (``kerasimg.data.packed``):
   the splits it was packed with, read from its record files.

Split rules: a source's own test split is used when it has one, otherwise a
stratified test split is carved; validation is carved, stratified and seeded,
from train (``val_split``) unless the source has one, or ``val_from="test"``
reuses the test split as the ported work did.
"""

from __future__ import annotations

import os
from pathlib import Path

from kerasimg.data.csv_labels import is_labels_csv, read_labels_csv
from kerasimg.data.decode import DEFAULT_MAX_PIXELS
from kerasimg.data.exclude import without
from kerasimg.data.labelled import LabelledData
from kerasimg.data.packed import is_packed, load_packed
from kerasimg.data.splits import TEST_SPLIT, FileSplit, fold_split, stratified_split
from kerasimg.data.verify import SkipRecorder, verify_images
from kerasimg.errors import UserError
from kerasimg.names import check_class_names

_HIDDEN_NAMES = {"thumbs.db", "desktop.ini"}
VAL_FROM = ("train", "test")
# One class per image, or any number of them (a labels CSV's ``labels`` column; ``--task multilabel``).
TASKS = ("single", "multilabel")
# When image files are checked: as the input pipeline reads them, or all before training starts.
VERIFY = ("pipeline", "full")


def is_hidden(name: str) -> bool:
    """Operating-system litter that is never data: ``.DS_Store``, ``._x.jpg``, ``Thumbs.db``."""
    return name.startswith(".") or name.lower() in _HIDDEN_NAMES


def check_data_exists(data: str) -> None:
    """Refuse a ``data`` folder that is missing or a file (scenes and tfds: names are not paths)."""
    if data == "scenes" or data.startswith(("scenes:", "tfds:")):
        return
    root = Path(data).expanduser()
    if not root.exists():
        raise UserError(
            "The data path does not exist. Pass a folder of class subfolders, the Intel layout, a labels "
            f"CSV, tfds:NAME or scenes. Received: data={data!r}"
        )
    if not root.is_dir() and not is_labels_csv(data):
        raise UserError(
            "The data path is a file; pass a folder or a labels CSV (file,label[,split]). "
            f"Received: data={data!r}"
        )


def data_identity(data: str) -> str:
    """What ``data`` names, independent of how it was spelled: a folder's resolved path, else as given.

    Used to tell whether a rerun uses the same data as the run it would continue.
    """
    if data == "scenes" or data.startswith(("scenes:", "tfds:")):
        return data
    return str(Path(data).expanduser().resolve())


def load_data(
    data: str = "scenes",
    *,
    val_split: float = 0.1,
    val_from: str = "train",
    test_split: float = TEST_SPLIT,
    seed: int = 0,
    verify: bool | str = "full",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    exclude: set[str] | None = None,
    image_dir: str | os.PathLike | None = None,
    folds: int | None = None,
    fold: int | None = None,
    task: str = "single",
    log=print,
) -> LabelledData:
    """Resolve ``data`` into splits; see the module docstring for what it accepts.

    Files that cannot be decoded, or whose header claims more than ``max_pixels``, are
    skipped and listed in ``LabelledData.skipped`` with the reason: all of them before
    this returns with ``verify="full"`` (or ``True``); with ``verify="pipeline"`` as the
    input pipeline meets them, and the test split's when it is evaluated
    (``LabelledData.check_split``). ``False`` checks nothing. Training files whose
    real path is in ``exclude`` (``kerasimg.data.exclude.read_exclusions``) are left out
    before validation is carved; test files never are. ``image_dir`` roots the relative
    paths of a labels CSV (default: the CSV's folder). With ``folds`` K and ``fold`` k,
    validation is fold k of a stratified K-fold partition of train and validation together
    (``kerasimg.data.splits.fold_split``); the test split is the same as without. ``task="multilabel"``
    reads a labels CSV's ``labels`` column (its splits carry multi-hot ``targets``).
    """
    if val_from not in VAL_FROM:
        raise UserError(f"--val-from must be one of {VAL_FROM}. Received: val_from={val_from!r}")
    if val_from == "train" and not 0 < val_split < 1:
        raise UserError(f"--val-split must be between 0 and 1. Received: val_split={val_split}")
    if folds and (data.startswith("tfds:") or is_packed(data)):
        raise UserError(
            f"--folds splits image files; {data} is not a folder or a labels CSV. Received: data={data!r}"
        )
    if task == "multilabel" and not is_labels_csv(data):
        raise UserError(
            "--task multilabel reads a labels CSV with a labels column (file,labels[,split]); a folder or "
            f"a dataset gives one class per image. Received: data={data!r}"
        )
    if image_dir is not None and not is_labels_csv(data):
        raise UserError(
            f"--image-dir roots the relative paths of a labels CSV; {data} is not a .csv file. "
            f"Received: image_dir={str(image_dir)!r}"
        )
    # How listed files become splits, the same for every source of image files (``assemble``).
    settings = dict(
        val_split=val_split,
        val_from=val_from,
        test_split=test_split,
        seed=seed,
        verify=verify,
        max_pixels=max_pixels,
        exclude=exclude,
        log=log,
        folds=folds,
        fold=fold,
    )
    if is_labels_csv(data):
        class_names, splits = read_labels_csv(data, image_dir, multilabel=task == "multilabel")
        path = Path(data).expanduser()
        return assemble(
            class_names,
            splits["train"],
            splits["val"],
            splits["test"],
            name=path.stem,
            source=f"{path} (labels CSV)",
            root=Path(image_dir).expanduser() if image_dir is not None else path.parent,
            shown=str(path),
            empty_class=lambda split, name: f"In {path}, class {name!r}",
            remedy="remove its rows",
            **settings,
        )
    if data.startswith("tfds:"):
        from kerasimg.data.tfds_source import load_tfds

        if exclude:
            raise UserError(f"--exclude names image files; {data} has none. Received: data={data!r}")
        return load_tfds(
            data[len("tfds:") :], val_split=val_split, val_from=val_from, test_split=test_split, seed=seed
        )
    if is_packed(data):
        if exclude:
            raise UserError(
                f"--exclude names image files; the pack in {data} holds records. Pack the data again "
                f"without them. Received: data={data!r}"
            )
        return load_packed(
            data, val_split=val_split, val_from=val_from, test_split=test_split, seed=seed, log=log
        )
    demo = data == "scenes" or data.startswith("scenes:")
    loaded = load_folder(_scenes_root(data) if demo else data, **settings)
    if demo:
        loaded.name, loaded.source = "scenes", data
    return loaded


def _scenes_root(data: str) -> Path:
    from kerasimg.data.scenes import ensure_scenes

    counts = {}
    if ":" in data:
        try:
            train, test = (int(v) for v in data.split(":", 1)[1].split(","))
            if train < 2 or test < 1:
                raise ValueError
        except ValueError:
            raise UserError(
                "The demo set takes per-class counts as scenes:TRAIN,TEST with TRAIN >= 2 and "
                f"TEST >= 1, e.g. scenes:40,10. Received: data={data!r}"
            ) from None
        counts = {"train_per_class": train, "test_per_class": test}
    return ensure_scenes(**counts, seed=0)


def _find_dir(root: Path, name: str) -> Path | None:
    """``root/name/name`` (Intel's double nesting) or ``root/name``."""
    for candidate in (root / name / name, root / name):
        if candidate.is_dir():
            return candidate
    return None


def load_folder(
    path: str | os.PathLike, *, verify: bool | str = "full", log=print, **settings
) -> LabelledData:
    """Class folders, ``train/`` + ``test/`` (+ ``val/``) or the Intel layout under ``path``.

    ``settings`` are ``assemble``'s: how the listed files become splits.
    """
    if isinstance(verify, str) and verify not in VERIFY:
        raise UserError(f"--verify must be one of {', '.join(VERIFY)}. Received: verify={verify!r}")
    check_data_exists(str(path))
    root = Path(path).expanduser()

    pred_dir = None
    if (train_dir := _find_dir(root, "seg_train")) is not None:
        layout = "intel"
        test_dir = _find_dir(root, "seg_test")
        val_dir = None
        pred_dir = _find_dir(root, "seg_pred")
    elif (root / "train").is_dir():
        layout, train_dir = "train/test", root / "train"
        test_dir = root / "test" if (root / "test").is_dir() else None
        val_dir = next((root / n for n in ("val", "validation") if (root / n).is_dir()), None)
    else:
        layout, train_dir, test_dir, val_dir = "class folders", root, None, None

    class_names = _class_names(train_dir)
    train = _list_split(train_dir, class_names, log=log)
    test = _list_split(test_dir, class_names, reference=train_dir, log=log) if test_dir else None
    val = _list_split(val_dir, class_names, reference=train_dir, log=log) if val_dir else None
    unlabelled = _unlabelled_files(pred_dir) if pred_dir else []

    folders = {"train": train_dir, "test": test_dir}
    return assemble(
        class_names,
        train,
        val,
        test,
        unlabelled=unlabelled,
        name=root.name,
        source=f"{root} ({layout})",
        root=root,
        empty_class=lambda split, name: f"Class folder {folders[split] / name}",
        remedy="remove the folder",
        verify=verify,
        log=log,
        **settings,
    )


def assemble(
    class_names: list[str],
    train: FileSplit,
    val: FileSplit | None,
    test: FileSplit | None,
    *,
    name: str,
    source: str,
    root: Path,
    empty_class,
    remedy: str,
    shown: str | None = None,
    unlabelled: list[str] = (),
    verify: bool | str = "full",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    val_split: float = 0.1,
    val_from: str = "train",
    test_split: float = TEST_SPLIT,
    seed: int = 0,
    exclude: set[str] | None = None,
    log=print,
    folds: int | None = None,
    fold: int | None = None,
) -> LabelledData:
    """Listed splits -> ``LabelledData``: check the files, leave out excluded ones, carve test and val.

    Shared by every source of image files (class folders, a labels CSV). A class with no readable
    image in ``split`` ("train" or "test") is refused as ``empty_class(split, name)`` ("Class folder
    DIR", "In labels.csv, class 'x'") with ``remedy``. ``shown`` names the data in notes and errors
    (default: ``root``).
    """
    shown = shown or str(root)
    unlabelled = list(unlabelled)
    notes: list[str] = []
    skipped: dict[str, str] = {}
    recorder = SkipRecorder(skipped, max_pixels) if verify == "pipeline" else None
    if verify and recorder is None:
        every = train.paths + (test.paths if test else []) + (val.paths if val else []) + unlabelled
        skipped = verify_images(every, max_pixels=max_pixels, log=log)
        if skipped:
            train = train.without(skipped)
            test = test.without(skipped) if test else None
            val = val.without(skipped) if val else None
            unlabelled = [p for p in unlabelled if p not in skipped]
    excluded = 0
    if exclude:
        train, excluded = without(train, exclude)
        if val is not None:
            val, more = without(val, exclude)
            excluded += more
        notes.append(f"Left out {excluded} training file(s) the audit flagged (--exclude).")
    _check_classes_nonempty(train, class_names, lambda name: empty_class("train", name), remedy)

    carved = []
    if test is None:
        train, test = stratified_split(train, test_split, seed)
        carved.append("test")
        notes.append(f"No test split in {shown}: holding out {test_split:.0%} of each class as test.")
    else:
        _check_classes_nonempty(test, class_names, lambda name: empty_class("test", name), remedy)
    if folds:
        pool = train if val is None else train + val
        short = [(n, c) for n, c in zip(class_names, pool.class_counts(len(class_names))) if c < folds]
        if short:
            raise UserError(
                f"--folds {folds}: class {short[0][0]!r} of {shown} has {short[0][1]} training image(s), "
                f"and each of the {folds} validation folds needs one; use fewer folds."
            )
        train, val = fold_split(pool, folds, fold, seed)
        carved.append(f"fold {fold}/{folds}")
    elif val is None:
        if val_from == "test":
            val = test
            notes.append("Validating on the test split (--val-from test), as the ported work did.")
        else:
            train, val = stratified_split(train, val_split, seed + 1)
            carved.append("val")
    for split_name, split in (("train", train), ("validation", val), ("test", test)):
        if len(split) == 0:
            raise UserError(f"The {split_name} split of {shown} is empty after checking the files.")
    if recorder is not None:  # the test split is checked when it is evaluated (check_split)
        train.skips = val.skips = test.skips = recorder
    return LabelledData(
        name=name,
        class_names=class_names,
        train=train,
        val=val,
        test=test,
        unlabelled=unlabelled,
        skipped=skipped,
        notes=notes,
        source=source,
        recorder=recorder,
        excluded=excluded,
        root=str(root),
        carved=carved,
        multilabel=train.targets is not None,
    )


def _class_names(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))
    if not names:
        raise UserError(
            f"No class subfolders in {folder}: expected one subfolder per class (e.g. "
            f"{folder}/cat/, {folder}/dog/) or the Intel layout (seg_train/seg_train/<class>/)."
        )
    if len(names) < 2:
        raise UserError(f"Only one class folder ({names[0]!r}) in {folder}: a classifier needs two or more.")
    return check_class_names(names, folder)


def _list_split(folder: Path, class_names: list[str], reference: Path | None = None, log=print) -> FileSplit:
    """All non-hidden files under each class folder; class sets must match the reference."""
    found = _class_names(folder)
    if found != class_names:
        missing = sorted(set(class_names) - set(found))
        extra = sorted(set(found) - set(class_names))
        parts = []
        if missing:
            parts.append(f"class {', '.join(map(repr, missing))} missing from {folder}")
        if extra:
            parts.append(f"class {', '.join(map(repr, extra))} in {folder} but not in {reference}")
        raise UserError("Class folders differ between splits: " + "; ".join(parts) + ".")
    split = FileSplit()
    for label, name in enumerate(class_names):
        files = list_files(folder / name, log=log, counted=len(split))
        split.paths.extend(files)
        split.labels.extend([label] * len(files))
    return split


# Above this many files a listing says how far it got, every this many files.
LISTING_PROGRESS_EVERY = 100_000


def list_files(folder: str | os.PathLike, *, log=print, counted: int = 0) -> list[str]:
    """Every non-hidden file under ``folder``, in ``os.walk``'s top-down order with sorted names.

    One ``os.scandir`` per folder and no ``stat`` per file: the directory entry's type
    says file or folder (only a symbolic link costs a ``stat``). Symbolic links to
    folders are listed as files are not: like ``os.walk``, they are not followed.
    ``counted`` files listed before this call count towards the progress line.
    """
    found: list[str] = []
    stack = [os.fspath(folder)]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as it:
                entries = sorted((e for e in it if not is_hidden(e.name)), key=lambda e: e.name)
        except OSError:
            continue  # os.walk skips a folder it cannot read, too
        subfolders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                found.append(os.path.join(top, entry.name))
                total = counted + len(found)
                if total % LISTING_PROGRESS_EVERY == 0:
                    log(f"Listing {folder}: {total:,} files so far...")
            elif not entry.is_symlink():
                subfolders.append(os.path.join(top, entry.name))
        stack.extend(reversed(subfolders))
    return found


def _unlabelled_files(folder: Path) -> list[str]:
    """The files (not folders, not hidden) directly in ``folder``, sorted; one ``scandir``, no ``stat``."""
    with os.scandir(folder) as it:
        return sorted(os.path.join(folder, e.name) for e in it if e.is_file() and not is_hidden(e.name))


def _check_classes_nonempty(split: FileSplit, class_names: list[str], subject, remedy: str) -> None:
    """Refuse ``split`` if a class has no file; ``subject(name)`` and ``remedy`` word the message."""
    counts = split.class_counts(len(class_names))
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    if empty:
        raise UserError(
            f"{subject(empty[0])} has no readable images (empty classes: {', '.join(empty)}); "
            f"add images or {remedy}."
        )


def run_data_settings(arguments: dict) -> dict:
    """``load_data``'s keywords from a run's recorded arguments, so a rebuilt split is the run's own."""
    return {
        "val_split": float(arguments.get("val_split", 0.1)),
        "val_from": arguments.get("val_from", "train"),
        "seed": int(arguments.get("seed", 0)),
        "max_pixels": int(arguments.get("max_pixels", DEFAULT_MAX_PIXELS)),
        "image_dir": arguments.get("image_dir"),
        "folds": arguments.get("folds"),
        "fold": arguments.get("fold"),
        "task": arguments.get("task", "single"),
    }
