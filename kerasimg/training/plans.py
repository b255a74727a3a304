"""Plans: a TOML file listing fine-tuning experiments that ``python -m kerasimg.compare`` runs.

A plan has ``name``, ``description``, ``[defaults]`` (``FitConfig`` fields for every
experiment), ``[quick]`` (overrides applied by ``--quick``) and one ``[[experiment]]``
table per row of the comparison: ``name``, ``backbone``, ``schedule``, ``epochs``, any
other ``FitConfig`` field, ``reported`` (a published accuracy to show beside ours) and
an inline ``quick`` table of per-experiment ``--quick`` overrides. Every backbone and
schedule is checked before anything trains; an error names the file and line.
Plans shipped with kerasimg live in ``kerasimg/plans/`` and are named without ``.toml``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kerasimg.errors import UserError
from kerasimg.models import get_backbone
from kerasimg.training.driver import FitConfig
from kerasimg.training.schedules import parse_schedule

PLANS_DIR = Path(__file__).resolve().parents[1] / "plans"
_FIT_KEYS = {f.name for f in dataclasses.fields(FitConfig)} - {"data", "out"}
_EXPERIMENT_KEYS = _FIT_KEYS | {"name", "reported", "quick"}
_PLAN_KEYS = _FIT_KEYS | {"data"}  # [defaults] and [quick] may also name the default data
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Experiment:
    name: str
    settings: dict
    reported: float | None = None
    line: int = 0

    def fit_config(self, out: str | Path, data: str | None = None, **overrides) -> FitConfig:
        """The experiment's ``FitConfig``; ``data`` (the user's ``--data``) beats the plan's default."""
        settings = {**self.settings, **overrides, "out": str(out)}
        if data is not None:
            settings["data"] = data
        return FitConfig(**settings)


@dataclass
class Plan:
    name: str
    path: Path
    description: str = ""
    experiments: list[Experiment] = field(default_factory=list)


def available_plans() -> list[str]:
    return sorted(p.stem for p in PLANS_DIR.glob("*.toml"))


def plan_path(plan: str) -> Path:
    """A shipped plan's name or a path to a TOML file."""
    path = Path(plan)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UserError(f"Plan file not found: {path}")
        return path
    shipped = PLANS_DIR / f"{plan}.toml"
    if not shipped.is_file():
        raise UserError(
            f"Unknown plan {plan!r}. Shipped plans: {', '.join(available_plans())}; or give a .toml path."
        )
    return shipped


def _experiment_lines(text: str) -> list[int]:
    return [i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith("[[experiment]]")]


def _key_line(text: str, start: int, key: str) -> int:
    """The line of ``key = ...`` in the experiment table starting at line ``start``."""
    lines = text.splitlines()
    pattern = re.compile(rf"(^|[{{,\s]){re.escape(key)}\s*=")
    for number in range(start + 1, len(lines) + 1):
        line = lines[number - 1].strip()
        if line.startswith("["):
            break
        if pattern.search(line.split("#", 1)[0]):
            return number
    return start


def load_plan(plan: str, quick: bool = False) -> Plan:
    """Read and check a plan; with ``quick`` the ``[quick]`` overrides are applied."""
    path = plan_path(plan)
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path} is not valid TOML: {error}") from None
    unknown = sorted(set(raw) - {"name", "description", "defaults", "quick", "experiment"})
    if unknown:
        raise UserError(f"{path}: unknown top-level key(s) {', '.join(unknown)}.")
    for table in ("defaults", "quick"):
        bad = sorted(set(raw.get(table, {})) - _PLAN_KEYS)
        if bad:
            raise UserError(
                f"{path}: [{table}] has unknown key(s) {', '.join(bad)}. "
                f"Known: {', '.join(sorted(_PLAN_KEYS))}"
            )
    experiments_raw = raw.get("experiment", [])
    if not experiments_raw:
        raise UserError(f"{path}: a plan needs at least one [[experiment]] table.")
    starts = _experiment_lines(text)
    experiments, seen = [], set()
    for index, entry in enumerate(experiments_raw):
        start = starts[index] if index < len(starts) else 0

        def fail(key: str, message: str) -> UserError:
            return UserError(f"{path}, line {_key_line(text, start, key)}: {message}")  # noqa: B023

        bad = sorted(set(entry) - _EXPERIMENT_KEYS)
        if bad:
            raise fail(bad[0], f"unknown key {bad[0]!r} in experiment {index + 1}.")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or name in seen:
            raise fail(
                "name",
                "each experiment needs a unique name of letters, digits, '-', '_' or '.'. "
                f"Received: name={name!r}",
            )
        seen.add(name)
        quick_overrides = entry.get("quick", {})
        bad = sorted(set(quick_overrides) - _FIT_KEYS)
        if bad:
            raise fail("quick", f"unknown key {bad[0]!r} in the quick overrides of {name!r}.")
        settings = {k: v for k, v in entry.items() if k in _FIT_KEYS}
        settings = {**raw.get("defaults", {}), **settings}
        if quick:
            settings.update(raw.get("quick", {}))
            settings.update(quick_overrides)
        key = "backbone" if "backbone" in entry else "name"
        try:
            spec = get_backbone(settings.get("backbone", FitConfig.backbone))
        except UserError as error:
            raise fail(key, f"experiment {name!r}: {error}") from None
        try:
            config = FitConfig(**{k: v for k, v in settings.items() if k != "data"})
            parse_schedule(
                config.schedule,
                spec.stage_names,
                config.epochs,
                lr=config.lr,
                finetune_lr=config.lr,
                unfreeze_every=config.unfreeze_every,
            )
            config.validate()
        except UserError as error:
            raise fail(
                "schedule" if "schedule" in str(error) else key, f"experiment {name!r}: {error}"
            ) from None
        except TypeError as error:
            raise fail(key, f"experiment {name!r}: {error}") from None
        experiments.append(Experiment(name, settings, entry.get("reported"), start))
    return Plan(raw.get("name", path.stem), path, raw.get("description", ""), experiments)
