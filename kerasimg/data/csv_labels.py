"""Labels in a CSV file (``--data labels.csv``) or a pandas DataFrame (``kerasimg.fit(data=frame)``).

The shape most labelled data arrives in outside of class folders: one row per image,
``file,label`` and an optional ``split`` (``train``, ``val``/``validation``, ``test``). Multi-label
data (``fit --task multilabel``) has a ``labels`` column instead, classes separated by ``;``.
Relative paths are relative to the CSV's folder, or to ``image_dir`` when given. Every
problem (an unknown column, an empty label, a missing file, a file listed twice) is one
line naming the CSV's line, before any image is decoded. Splits the file does not give
are carved as for class folders (``kerasimg.data.sources.assemble``).
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from kerasimg.data.splits import FileSplit
from kerasimg.errors import UserError
from kerasimg.names import check_class_names

COLUMNS = ("file", "label", "split")
REQUIRED = ("file", "label")
MULTILABEL_COLUMNS = ("file", "labels", "split")
LABEL_SEPARATOR = ";"
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}


def is_labels_csv(data: str) -> bool:
    """``data`` names a ``.csv`` file (any case), existing or not: it is read as a labels table."""
    return isinstance(data, str) and data.lower().endswith(".csv")


def read_labels_csv(
    path: str | os.PathLike, image_dir: str | os.PathLike | None = None, *, multilabel: bool = False
) -> tuple[list[str], dict[str, FileSplit | None]]:
    """The class names (sorted labels) and the ``train``, ``val``, ``test`` splits the CSV gives.

    A split the CSV does not mention is ``None`` (it is carved later). Labels are stripped of
    surrounding spaces, so ``" cat"`` and ``"cat"`` are one class. With ``multilabel``, the
    ``labels`` column lists each image's classes separated by ``;`` and the splits carry targets.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"No labels CSV at {path}. Received: data={str(path)!r}")
    root = Path(image_dir).expanduser() if image_dir is not None else path.parent
    if image_dir is not None and not root.is_dir():
        raise UserError(f"--image-dir is not a folder. Received: image_dir={str(image_dir)!r}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
            rows = _rows(csv.reader(f), path, multilabel)
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}).") from None
    except csv.Error as error:
        raise UserError(f"{path} is not a readable CSV file: {error}.") from None
    return _splits(rows, path, root, multilabel)


def _rows(reader, path: Path, multilabel: bool = False) -> list[tuple[int, dict[str, str]]]:
    """``(line, {column: value})`` per data row, after checking the header."""
    label = "labels" if multilabel else "label"
    header = next(reader, None)
    if header is None:
        raise UserError(f"{path} is empty: expected a header line such as file,{label}[,split].")
    header = [name.strip() for name in header]
    unknown = [name for name in header if name not in (MULTILABEL_COLUMNS if multilabel else COLUMNS)]
    if unknown:
        hint = {
            "labels": " (a column of several labels is multi-label data: pass --task multilabel)",
            "label": " (one label per image is single-label data: drop --task multilabel)",
        }.get(unknown[0], "")
        raise UserError(
            f"Line 1 of {path}: unknown column {unknown[0]!r}; the columns are file, {label} and optionally "
            f"split{hint}. Received: {','.join(header)}"
        )
    missing = [name for name in ("file", label) if name not in header]
    if missing or len(set(header)) != len(header):
        raise UserError(
            f"Line 1 of {path}: the header needs each of file and {label} once (split is optional). "
            f"Received: {','.join(header)}"
        )
    rows = []
    for fields in reader:
        line = reader.line_num
        if not any(field.strip() for field in fields):
            continue  # a blank line, such as the one some editors leave at the end
        if len(fields) != len(header):
            raise UserError(
                f"Line {line} of {path} has {len(fields)} fields, the header {len(header)}: "
                f"{','.join(fields)!r}. Quote a value that holds a comma."
            )
        rows.append((line, dict(zip(header, fields))))
    if not rows:
        raise UserError(f"{path} has a header but no rows: add one line per image (file,label).")
    return rows


def _labels_of(row: dict[str, str], multilabel: bool) -> tuple[str, ...]:
    """A row's classes: its ``label``, or its ``labels`` split at ``;`` (blanks and repeats dropped)."""
    if not multilabel:
        return (row["label"].strip(),) if row["label"].strip() else ()
    return tuple(dict.fromkeys(x.strip() for x in row["labels"].split(LABEL_SEPARATOR) if x.strip()))


def _splits(
    rows, path: Path, root: Path, multilabel: bool = False
) -> tuple[list[str], dict[str, FileSplit | None]]:
    seen: dict[str, int] = {}
    missing: list[tuple[int, str, str]] = []
    listed: list[tuple[int, str, tuple[str, ...], str]] = []  # line, file, labels, split
    for line, row in rows:
        file, labels = row["file"].strip(), _labels_of(row, multilabel)
        if not file:
            raise UserError(f"Line {line} of {path} has an empty file field.")
        if not labels:
            raise UserError(f"Line {line} of {path} has an empty label (file {file}).")
        given = row.get("split", "train").strip().lower() or "train"
        if given not in SPLIT_NAMES:
            raise UserError(
                f"Line {line} of {path}: split must be train, val (or validation) or test. "
                f"Received: split={row['split']!r}"
            )
        full = os.path.normpath(os.path.join(root, os.path.expanduser(file)))
        if full in seen:
            raise UserError(
                f"Line {line} of {path} lists {file} again (first on line {seen[full]}): one row per "
                "image, one label each."
            )
        seen[full] = line
        if not os.path.isfile(full):
            missing.append((line, file, full))
        listed.append((line, full, labels, SPLIT_NAMES[given]))
    if missing:
        line, file, full = missing[0]
        more = f"; {len(missing)} rows in all name missing files" if len(missing) > 1 else ""
        raise UserError(
            f"Line {line} of {path} names {file}, which is not a file (looked for {full}){more}. Paths "
            "are relative to the CSV's folder; pass --image-dir if they are relative to another."
        )
    train_labels = sorted({label for _, _, labels, split in listed if split == "train" for label in labels})
    for line, _, labels, split in listed:
        for label in labels:
            if split != "train" and label not in train_labels:
                raise UserError(
                    f"Line {line} of {path}: class {label!r} is in the {split} split but no training row "
                    "has it."
                )
    if len(train_labels) < 2:
        raise UserError(
            f"{path} has training rows of {len(train_labels)} class(es) {train_labels}: a classifier "
            "needs two or more."
        )
    class_names = check_class_names(train_labels, path)
    index = {name: i for i, name in enumerate(class_names)}
    splits: dict[str, FileSplit | None] = {
        "train": FileSplit(targets=[] if multilabel else None),
        "val": None,
        "test": None,
    }
    for _, full, labels, split in listed:
        if splits[split] is None:
            splits[split] = FileSplit(targets=[] if multilabel else None)
        splits[split].paths.append(full)
        splits[split].labels.append(index[labels[0]])
        if multilabel:
            splits[split].targets.append(tuple(int(name in labels) for name in class_names))
    return class_names, splits


def frame_to_csv(frame, image_dir: str | os.PathLike | None, folder: Path) -> str:
    """Write a pandas DataFrame of ``file``, ``label`` (and ``split``) as a labels CSV; return its path.

    A multi-label frame has ``labels`` instead: ``;``-separated text, or a list of class names per
    row. Relative paths are made absolute against ``image_dir`` (default: the working directory),
    so the CSV names the same images wherever it is read from. The file is named by a hash of its
    content, so the same frame is the same ``data`` (a resumed run or a rerun finds it again).
    """
    columns = [str(c) for c in frame.columns]
    allowed = MULTILABEL_COLUMNS if "labels" in columns else COLUMNS
    unknown = [c for c in columns if c not in allowed]
    if unknown or not {"file", allowed[1]} <= set(columns):
        raise UserError(
            "A DataFrame given as data has the columns file, label (or labels, for multi-label data) and "
            f"optionally split. Received: columns={columns}"
        )
    root = Path(image_dir).expanduser() if image_dir is not None else Path.cwd()
    table = frame[[c for c in allowed if c in columns]].copy()
    if "labels" in columns:
        table["labels"] = [
            LABEL_SEPARATOR.join(map(str, v)) if isinstance(v, (list, tuple, set)) else v
            for v in table["labels"]
        ]
    table = table.astype(str)
    table["file"] = [os.path.normpath(os.path.join(root, os.path.expanduser(f))) for f in table["file"]]
    text = table.to_csv(index=False, lineterminator="\n")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    target = folder / f"labels-{digest}.csv"
    if not target.exists():
        from kerasimg.files import write_text

        write_text(target, text)
    return str(target)
