"""What ``--resume`` continues: an earlier run's arguments, checked against what the caller gives.

A resumed run keeps its saved arguments. Any other argument that differs is refused
by name, except a larger ``epochs``, which extends an interrupted run or a finished one
whose last phase's training state is still in ``backup/``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kerasimg.errors import UserError
from kerasimg.training.config import FitConfig, ResolvedFit, arguments_of
from kerasimg.training.run import Run


def load_run_config(run_dir: str | Path, **overrides) -> FitConfig:
    """The ``FitConfig`` an earlier run was started with, for ``--resume``.

    ``overrides`` are the arguments the caller gave beside the run: any that differs
    from the saved run is refused by name, except a larger ``epochs``, which extends
    an interrupted or finished run. A finished run needs one to be resumed.
    """
    run = Run(run_dir)
    if not run.exists:
        raise UserError(f"No config.json in {run_dir}: --resume takes the directory of an earlier run.")
    saved = run.read_config()
    config = dataclasses.replace(arguments_of(saved), out=str(run_dir))
    names = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"Unknown settings for a resumed run: {', '.join(unknown)}.")
    epochs = overrides.pop("epochs", None)
    if "connect_timeout" in overrides:  # how long this launch waits for its processes, not the run's
        config = dataclasses.replace(config, connect_timeout=overrides.pop("connect_timeout"))
    out = overrides.pop("out", None)
    conflicts = [
        f"--{key.replace('_', '-')} {value} (the run has {getattr(config, key)})"
        for key, value in sorted(overrides.items())
        if value != getattr(config, key)
    ]
    if out is not None and Path(out).resolve() != Path(run_dir).resolve():
        conflicts.append(f"--out {out} (a resumed run stays in {run_dir})")
    trained = int(saved["resolved"].get("epochs", config.epochs))
    if epochs is not None and epochs < trained:
        conflicts.append(f"--epochs {epochs} (the run has {trained}; it can only grow)")
    if conflicts:
        raise UserError(
            f"--resume continues {run_dir} with its saved settings; these differ: {'; '.join(conflicts)}. "
            "Drop them, or start a new run with another --out."
        )
    extends = epochs is not None and epochs > trained
    if run.finished and not extends:
        raise UserError(
            f"The run in {run_dir} already finished (metrics.json exists); nothing to resume. "
            f"Pass a larger --epochs (it has {trained}) to train it further."
        )
    last = len(saved["resolved"].get("phases") or [None]) - 1
    if run.finished and not run.backup_dir(last).is_dir():
        raise UserError(
            f"The run in {run_dir} cannot be extended: its last phase's training state "
            f"({run.backup_dir(last).relative_to(run.path)}) is gone (it was deleted, or an earlier "
            "kerasimg finished the run without keeping it). Start a new run instead."
        )
    return dataclasses.replace(config, epochs=epochs) if extends else config


def check_out(run: Run, resume: bool, resolved: ResolvedFit) -> None:
    """``--out`` for this run: a new or empty folder, or with ``resume`` the run it continues."""
    run.check_usable()
    if resume:
        check_extension(run, resolved)
    elif run.exists:
        raise UserError(
            f"The run directory {run.path} already holds a run; pass --resume {run.path} "
            "to continue it or choose another --out."
        )
    elif run.holds_other_files:
        raise UserError(
            f"The run directory {run.path} holds files that are not a kerasimg run; "
            "choose an empty or new --out."
        )


def check_extension(run: Run, resolved: ResolvedFit) -> None:
    """A resumed run keeps every phase it had; only the last one may grow."""
    saved = run.read_config()["resolved"].get("phases")
    if not saved:
        return
    new = [p.to_json() for p in resolved.phases]
    # Compare what a phase is (its Phase fields), not what config.json derives from it (stage_lr).
    saved = [{key: phase.get(key) for key in new[0]} for phase in saved]
    if len(new) != len(saved) or new[:-1] != saved[:-1] or new[-1]["start"] != saved[-1]["start"]:
        raise UserError(
            f"With --epochs {resolved.epochs} the schedule's phases would no longer match the run's "
            f"({saved}); only the last phase can be extended. Start a new run instead."
        )
