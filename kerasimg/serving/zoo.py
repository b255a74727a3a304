"""The zoo: ``saved_models/<name>/<version>/`` SavedModels, their index, and TF Serving's config.

``zoo.json`` holds one entry per model and version (backbone, data, classes,
metrics, parameters, FLOPs, image size, schedule, export time, the run's config
digest and path). Every change happens under a file lock and is written by
atomic replace, so two exports at once never lose an entry. ``ZOO.md`` (a table
for people) and ``models.config`` (TF Serving's ``model_config_list``, written
from tensorflow-serving-api's protos) are regenerated from the index each time.
An entry's ``formats`` lists its files (``kerasimg.serving.formats``) with their sizes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from filelock import FileLock

from kerasimg import selection
from kerasimg.errors import UserError
from kerasimg.files import inside, write_json, write_text
from kerasimg.names import check_name
from kerasimg.serving.formats import describe as describe_formats

DEFAULT_ZOO = "saved_models"
# Where the zoo is mounted inside the TF Serving container in the README's docker line.
SERVING_BASE = "/models"


def check_model_name(name: object) -> str:
    """The zoo's name rule (kerasimg's one rule for folder names); all-digit names are versions."""
    return check_name(name, "zoo model name")


class Zoo:
    def __init__(self, root: str | Path = DEFAULT_ZOO):
        self.root = Path(root)

    @property
    def index_path(self) -> Path:
        return self.root / "zoo.json"

    @contextlib.contextmanager
    def locked(self):
        """An exclusive lock over the index for the duration of a read-modify-write."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / ".zoo.lock"):
            yield

    def entries(self) -> list[dict]:
        """The index's entries; ``UserError`` naming ``zoo.json`` when it is damaged (see ``reindex``)."""
        try:
            text = self.index_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            index = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise self._damaged(f"it is not valid JSON, perhaps truncated ({error})") from None
        entries = index.get("models") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("version"), int)
            for e in entries
        ):
            raise self._damaged('expected an object whose "models" lists entries with a name and a version')
        return entries

    def _damaged(self, problem: str) -> UserError:
        return UserError(
            f"The zoo index {self.index_path} is damaged: {problem}. Nothing was changed; rebuild it "
            f"from the version folders with `python -m kerasimg.zoo reindex --zoo {self.root}`."
        )

    def reindex(self) -> list[dict]:
        """Rebuild ``zoo.json`` (and ``ZOO.md``, ``models.config``) from the version folders.

        An entry the old index still holds readably is kept as it was; a version it lacks gets an
        entry from its folder (class names from ``labels.txt``, the formats present, the folder's
        time) marked ``"reindexed": true``. Returns the new entries.
        """
        import datetime

        from kerasimg.serving.formats import FORMATS, LABELS_FILE
        from kerasimg.serving.runtimes import read_labels

        with self.locked():
            try:
                known = {(e["name"], e["version"]): e for e in self.entries()}
            except UserError:
                known = {}
            entries = []
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                try:
                    name = check_model_name(folder.name)
                except UserError:
                    continue
                for version in self.versions(name):
                    path = folder / str(version)
                    if not (path / "saved_model.pb").exists():
                        continue
                    if (name, version) in known:
                        entries.append({**known[(name, version)], "path": str(path)})
                        continue
                    files = {
                        f.name: {"bytes": f.bytes(path)}
                        for f in FORMATS.values()
                        if f.filename and all(file.is_file() for file in f.files(path))
                    }
                    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                    entries.append(
                        {
                            "name": name,
                            "version": version,
                            "class_names": read_labels(path) if (path / LABELS_FILE).is_file() else [],
                            "path": str(path),
                            "exported": datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(
                                timespec="seconds"
                            ),
                            "formats": {"savedmodel": {"bytes": size}, **files},
                            "reindexed": True,
                        }
                    )
            self._write(entries)
        return sorted(entries, key=lambda e: (e["name"], e["version"]))

    def model_dir(self, name: str) -> Path:
        """``<zoo>/<name>`` for a valid name, resolved and checked to lie inside the zoo."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(
                f"The zoo {self.root} is a file; give --zoo a folder. Received: zoo={str(self.root)!r}"
            )
        return inside(self.root, check_model_name(name))

    @staticmethod
    def parse_target(target: str) -> tuple[str, int | None]:
        """``NAME`` or ``NAME/VERSION`` -> ``(name, version or None)``, both checked."""
        name, _, version = target.partition("/")
        check_model_name(name)
        if version and not version.isdigit():
            raise UserError(f"A version is a whole number. Received: {target!r}")
        return name, int(version) if version else None

    def resolve(self, target: str) -> Path:
        """``NAME`` (its newest version) or ``NAME/VERSION`` -> the version folder, inside the zoo."""
        name, version = self.parse_target(target)
        known = self.versions(name)
        if not known or (version is not None and version not in known):
            raise UserError(f"No model {target} in {self.root}; `python -m kerasimg.zoo list` shows them.")
        return inside(self.model_dir(name), str(known[-1] if version is None else version))

    def versions(self, name: str) -> list[int]:
        folder = self.model_dir(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def add(self, entry: dict) -> None:
        with self.locked():
            entries = [
                e for e in self.entries() if (e["name"], e["version"]) != (entry["name"], entry["version"])
            ]
            self._write([*entries, entry])

    def remove(self, name: str, version: int | None = None) -> list[int]:
        """Delete a model's version (or all versions) from disk and from the index."""
        folder = self.model_dir(name)  # checked before anything, the lock file included, is written
        with self.locked():
            entries = self.entries()  # a damaged index stops the removal before anything is deleted
            known = self.versions(name)
            doomed = known if version is None else [v for v in known if v == version]
            if not doomed:
                raise UserError(f"No model {name}{'' if version is None else f'/{version}'} in {self.root}.")
            for v in doomed:
                shutil.rmtree(inside(folder, str(v)))
            if not any(folder.iterdir()):  # never another export's staging folder
                folder.rmdir()
            self._write([e for e in entries if not (e["name"] == name and e["version"] in doomed)])
        return doomed

    def _write(self, entries: list[dict]) -> None:
        entries = sorted(entries, key=lambda e: (e["name"], e["version"]))
        write_json(self.index_path, {"models": entries})
        write_text(self.root / "ZOO.md", render_table(entries))
        write_text(self.root / "models.config", models_config(sorted({e["name"] for e in entries})))


def render_table(entries: list[dict]) -> str:
    lines = [
        "# Model zoo",
        "",
        "Generated by `python -m kerasimg.export`; do not edit.",
        "",
        "| model | version | backbone | data | test accuracy | classes | size | parameters | GFLOPs "
        "| schedule | exported | formats |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        accuracy = e.get("metrics", {}).get("test_accuracy")
        shown = "unevaluated" if accuracy is None else f"{accuracy:.2%}"
        flops = e.get("flops_per_image")
        lines.append(
            f"| {e['name']} | {e['version']} | {e.get('backbone', '')} | {e.get('data', '')} | "
            f"{selection.accuracy_cell(shown, optimistic(e))} | {len(e.get('class_names', []))} | "
            f"{e.get('image_size', '')} | {e.get('parameters', 0):,} | "
            f"{'' if flops is None else f'{flops / 1e9:.2f}'} | {e.get('schedule', '')} | "
            f"{e.get('exported', '')} | {describe_formats(e.get('formats', {}))}{_tta_note(e)} |"
        )
    return "\n".join(lines) + "\n" + selection.legend(any(optimistic(e) for e in entries))


def _tta_note(entry: dict) -> str:
    """Said beside the formats: a SavedModel with TTA costs two forward passes a request."""
    tta = entry.get("tta", "none")
    return "" if tta == "none" else f" (SavedModel signatures with {tta} TTA)"


def optimistic(entry: dict) -> bool:
    """Whether a zoo entry's test accuracy was measured on the split that chose its best epoch."""
    return selection.selected_on_test(entry.get("metrics", {}))


def models_config(names: list[str], base: str = SERVING_BASE) -> str:
    """TF Serving's ``--model_config_file`` text for ``names``, from the protos."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        model = config.model_config_list.config.add()
        model.name = name
        model.base_path = f"{base.rstrip('/')}/{name}"
        model.model_platform = "tensorflow"
        model.model_version_policy.latest.num_versions = 1
    return text_format.MessageToString(config)


def parse_models_config(text: str):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
