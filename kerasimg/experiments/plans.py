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

import re
from dataclasses import dataclass, field
from pathlib import Path

from kerasimg.errors import UserError
from kerasimg.models import get_backbone
from kerasimg.names import check_name
from kerasimg.settings import schema
from kerasimg.tomlfile import KINDS, read_toml
from kerasimg.training.config import FitConfig

PLANS_DIR = Path(__file__).resolve().parents[1] / "plans"


def _schemas() -> tuple[dict, set, dict]:
    """The schema of ``[defaults]``/``[quick]``, the fit keys an experiment may set, and its schema.

    Built from ``FitConfig``'s fields each time, so a new field is a plan key at once.
    """
    fit_kinds = schema(FitConfig, exclude=("out", "config"))  # each experiment has its own run; no file
    fit_keys = set(fit_kinds) - {"data"}
    # [defaults] and [quick] may also name the default data.
    experiment = {k: fit_kinds[k] for k in fit_keys} | {
        "name": "string",
        "reported": "number",
        "quick": "table",
    }
    return fit_kinds, fit_keys, experiment


_TOP_SCHEMA = {
    "name": "string",
    "description": "string",
    "defaults": "table",
    "quick": "table",
    "experiment": "tables",
}


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
        return path  # read_toml says if it is missing, a folder or not UTF-8
    shipped = PLANS_DIR / f"{plan}.toml"
    if not shipped.is_file():
        raise UserError(
            f"Unknown plan {plan!r}. Shipped plans: {', '.join(available_plans())}; or give a .toml path."
        )
    return shipped


_RECEIVED = re.compile(r"Received: (\w+)=")


def _blame(file, error: UserError, origin: dict, index: int, name: str, default: str) -> UserError:
    """``error`` at the line the faulty setting came from (the ``Received: key=`` it names)."""
    match = _RECEIVED.search(str(error))
    key = match.group(1) if match and match.group(1) in origin else None
    if key is None and "schedule" in str(error) and "schedule" in origin:
        key = "schedule"
    table, at, line_key = origin.get(key or default, ("experiment", index, "name"))
    return file.error(f"experiment {name!r}: {error}", line_key, table, at)


def load_plan(plan: str, quick: bool = False) -> Plan:
    """Read and check a plan; with ``quick`` the ``[quick]`` overrides are applied.

    Every key is checked for its name and type (the schema follows ``FitConfig``),
    every name with the zoo's rule and for duplicates, and every experiment's
    resolved settings with ``FitConfig.validate`` and its schedule, before anything
    trains. A message names the file and the line of the key at fault: the
    experiment's own, or the ``[defaults]``/``[quick]`` line the value came from.
    """
    file = read_toml(plan_path(plan), "plan file")
    plan_schema, fit_keys, experiment_schema = _schemas()
    path, raw = file.path, file.data
    if isinstance(raw.get("experiment"), dict):
        raise file.error(
            "write each experiment as an [[experiment]] table (two brackets); [experiment] makes a "
            "single table, not a list. Received: [experiment]",
            "experiment",
        )
    file.check(raw, _TOP_SCHEMA)
    for table in ("defaults", "quick"):
        file.check(raw.get(table, {}), plan_schema, table)
    experiments_raw = raw.get("experiment", [])
    if not experiments_raw:
        raise UserError(f"{path}: a plan needs at least one [[experiment]] table.")
    experiments, seen = [], {}
    for index, entry in enumerate(experiments_raw):
        file.check(entry, experiment_schema, "experiment", index)
        name_line = file.line("name", "experiment", index)

        def fail(message: str, key: str = "name") -> UserError:
            return file.error(message, key, "experiment", index)  # noqa: B023

        name = entry.get("name")
        try:
            check_name(name, "experiment name")
        except UserError as error:
            raise fail(str(error)) from None
        if name in seen:
            raise fail(f"duplicate experiment name {name!r} (first at line {seen[name]}); names must differ.")
        seen[name] = name_line
        reported = entry.get("reported")
        if reported is not None and not 0 <= reported <= 1:
            raise fail(f"'reported' is an accuracy in [0, 1]. Received: reported={reported!r}", "reported")
        quick_overrides = entry.get("quick", {})
        bad = sorted(set(quick_overrides) - fit_keys)
        if bad:
            raise fail(f"unknown key {bad[0]!r} in the quick overrides of {name!r}.", "quick")
        for key, value in quick_overrides.items():
            accepts, expected = KINDS[plan_schema[key]]
            if not accepts(value):
                raise fail(f"quick {key!r} must be {expected}. Received: {key}={value!r}", "quick")
        # Where each setting came from, to blame the right line.
        origin = {k: ("defaults", None, k) for k in raw.get("defaults", {})}
        origin |= {k: ("experiment", index, k) for k in entry if k in fit_keys}
        settings = {**raw.get("defaults", {}), **{k: v for k, v in entry.items() if k in fit_keys}}
        if quick:
            settings.update(raw.get("quick", {}))
            settings.update(quick_overrides)
            origin |= {k: ("quick", None, k) for k in raw.get("quick", {})}
            origin |= {k: ("experiment", index, "quick") for k in quick_overrides}

        def blame(error: UserError, default: str = "name") -> UserError:
            return _blame(file, error, origin, index, name, default)  # noqa: B023

        try:
            get_backbone(settings.get("backbone", FitConfig.backbone))
        except UserError as error:
            raise blame(error, "backbone") from None
        try:
            FitConfig(**{k: v for k, v in settings.items() if k != "data"}).resolve()
        except UserError as error:
            raise blame(error) from None
        experiments.append(Experiment(name, settings, reported, name_line))
    name = raw.get("name", path.stem)
    try:
        check_name(name, "plan name")
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    return Plan(name, path, raw.get("description", ""), experiments)
