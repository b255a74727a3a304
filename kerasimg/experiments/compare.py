"""Run a plan's experiments one after another and tabulate them side by side.

Each experiment is an ordinary ``fit`` run in ``<out>/<experiment>/``. A finished
experiment (its ``metrics.json`` exists) is skipped and an interrupted one resumes
from its ``BackupAndRestore`` state, so rerunning the command continues a
comparison. ``compare.json`` keeps the settings each experiment was started with:
an experiment whose settings changed in the plan (or by ``--data``/``--precision``)
is trained again, and the console says which settings changed. One process at a
time runs a comparison in ``out`` (a lock, ``.compare.lock``). After each experiment
``results.csv``, ``results.md`` and ``curves.png`` (validation loss and accuracy of
every experiment, overlaid) are rewritten. An experiment with ``folds = K`` trains its K folds
(``kerasimg.training.kfold``) and its row gives their mean metrics and test accuracy's spread.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kerasimg import selection  # noqa: E402
from kerasimg.data.sources import check_data_exists, data_identity  # noqa: E402
from kerasimg.errors import UserError  # noqa: E402
from kerasimg.experiments.plans import Plan  # noqa: E402
from kerasimg.files import inside, save_figure, write_json, write_text  # noqa: E402
from kerasimg.locks import exclusive  # noqa: E402
from kerasimg.serving.zoo import DEFAULT_ZOO  # noqa: E402
from kerasimg.tables import markdown_table, write_csv  # noqa: E402
from kerasimg.training import reports  # noqa: E402
from kerasimg.training.config import FitConfig  # noqa: E402
from kerasimg.training.driver import fit  # noqa: E402
from kerasimg.training.kfold import SUMMARY_FILE as FOLDS_SUMMARY  # noqa: E402
from kerasimg.training.kfold import fit_folds  # noqa: E402
from kerasimg.training.resume import load_run_config  # noqa: E402
from kerasimg.training.run import Run  # noqa: E402

COLUMNS = [
    ("experiment", "experiment", ""),
    ("backbone", "backbone", ""),
    ("schedule", "schedule", ""),
    ("epochs", "epochs", "d"),
    ("image_size", "size", "d"),
    ("precision", "precision", ""),
    ("test_accuracy", "test accuracy", ".4f"),
    ("test_accuracy_std", "± std (folds)", ".4f"),
    ("test_balanced_accuracy", "balanced accuracy", ".4f"),
    ("test_macro_f1", "macro-F1", ".4f"),
    ("best_val_accuracy", "best val accuracy", ".4f"),
    ("reported", "seed reported", ".4f"),
    (selection.METRICS_KEY, selection.MARK, ""),
    ("params", "parameters", ",d"),
    ("gflops", "GFLOPs", ".2f"),
    ("train_seconds", "train s", ".0f"),
    ("images_per_sec", "train images/s", ".1f"),
    ("exported", "zoo", ""),
]
STATE = "compare.json"
LOCK = ".compare.lock"
RESULTS = ("results.md", "results.csv", "curves.png", "report.html")
OWN_FILES = (STATE, LOCK, *RESULTS)  # no experiment may be named like one of these


def summarize(name: str, run_dir: Path, reported: float | None = None) -> dict:
    """One results row from a finished run's config, metrics and history."""
    run = Run(run_dir)
    config, metrics = run.read_config(), run.read_metrics()
    arguments, resolved = config["arguments"], config["resolved"]
    history = reports.read_history(run.history_path)
    epoch_seconds = [r["epoch_seconds"] for r in history if "epoch_seconds" in r]
    train_size = config.get("data_summary", {}).get("train")
    return {
        "experiment": name,
        "backbone": arguments["backbone"],
        "schedule": resolved["schedule"],
        "epochs": resolved["epochs"],
        "image_size": resolved["image_size"],
        "precision": resolved.get("precision", "float32"),
        "test_accuracy": metrics["test_accuracy"],
        # Runs evaluated before these were metrics.json keys still have their per-class table.
        "test_balanced_accuracy": metrics.get("test_balanced_accuracy", _mean_of(metrics, "recall")),
        "test_macro_f1": metrics.get("test_macro_f1", _mean_of(metrics, "f1")),
        "best_val_accuracy": max((r.get("val_accuracy", 0.0) for r in history), default=None),
        "reported": reported,
        selection.METRICS_KEY: "yes" if selection.selected_on_test(metrics, arguments) else "",
        "params": config["parameters"]["total"],
        "gflops": config["flops_per_image"] / 1e9 if config.get("flops_per_image") else None,
        "train_seconds": metrics.get("train_seconds"),
        # Median epoch (training and validation); cached-feature epochs count their images too.
        "images_per_sec": train_size / statistics.median(epoch_seconds)
        if epoch_seconds and train_size
        else None,
        "history": history,
        "run_dir": Path(run_dir),
    }


def summarize_folds(name: str, root: Path, reported: float | None = None) -> dict:
    """One results row for a k-fold experiment: the folds' means (``folds.json``), the spread of test
    accuracy beside it, the first fold's settings and curves, and the folds' training time summed."""
    summary = json.loads((root / FOLDS_SUMMARY).read_text(encoding="utf-8"))
    runs = [root / row["run"] for row in summary["runs"]]
    row = summarize(name, runs[0], reported)
    mean, std = summary["mean"], summary["std"]
    row.update(
        {k: mean[k] for k in ("test_accuracy", "test_balanced_accuracy", "test_macro_f1") if k in mean}
    )
    row["test_accuracy_std"] = std.get("test_accuracy")
    row["best_val_accuracy"] = mean.get("val_accuracy")
    row["train_seconds"] = sum(Run(run).read_metrics().get("train_seconds") or 0 for run in runs)
    row["experiment"] = f"{name} ({len(runs)} folds)"
    return row


def _mean_of(metrics: dict, key: str) -> float | None:
    values = [c[key] for c in metrics.get("per_class", {}).values() if c.get("support", 1) > 0]
    return float(statistics.fmean(values)) if values else None


def run_plan(
    plan: Plan,
    out: str | os.PathLike,
    *,
    data: str | None = None,
    precision: str | None = None,
    export: bool = False,
    zoo: str | os.PathLike = DEFAULT_ZOO,
    log=print,
) -> list[dict]:
    """Run (or resume) every experiment of ``plan`` in ``out``; return the results rows."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(
            f"--out must be a folder (one run directory per experiment goes in it); {out} is a file. "
            f"Give another --out. Received: out={str(out)!r}"
        )
    for experiment in plan.experiments:
        if experiment.name.lower() in OWN_FILES:
            raise UserError(
                f"{plan.path}, line {experiment.line}: the experiment name {experiment.name!r} is taken by "
                f"the comparison's own files ({', '.join(OWN_FILES)}); rename the experiment. "
                f"Received: name={experiment.name!r}"
            )
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / LOCK, f"The comparison in {out}"):
        return _run_plan(plan, out, data, precision, export, zoo, log)


def fingerprint(config) -> dict:
    """The settings of a ``FitConfig`` that change its result (all but where it is written and read from)."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "config")}
    settings["data"] = data_identity(settings["data"])
    return settings


def changed_settings(recorded: dict, settings: dict) -> dict:
    """``{key: (then, now)}`` of the settings that differ; a key one side lacks counts as its default."""
    defaults = fingerprint(FitConfig())
    return {
        k: (recorded.get(k, defaults.get(k)), settings.get(k, defaults.get(k)))
        for k in sorted(set(recorded) | set(settings))
        if recorded.get(k, defaults.get(k)) != settings.get(k, defaults.get(k))
    }


def set_aside(run_dir: Path) -> Path:
    """Rename a run whose settings changed to ``<name>.old-N`` beside it: nothing trained is deleted."""
    n = 1
    while run_dir.with_name(f"{run_dir.name}.old-{n}").exists():
        n += 1
    return run_dir.rename(run_dir.with_name(f"{run_dir.name}.old-{n}"))


def _run_plan(plan: Plan, out: Path, data, precision, export, zoo, log) -> list[dict]:
    state_path = out / STATE
    state = (
        json.loads(state_path.read_text(encoding="utf-8"))
        if state_path.exists()
        else {"plan": str(plan.path), "exported": {}}
    )
    state.setdefault("settings", {})
    overrides = {"precision": precision} if precision else {}
    rows = []
    for number, experiment in enumerate(plan.experiments, 1):
        run_dir = inside(out, experiment.name)
        banner = f"[{number}/{len(plan.experiments)}] {experiment.name}"
        config = experiment.fit_config(run_dir, data, **overrides)
        resolved = config.resolve()  # a bad setting stops here, before anything is moved
        settings = fingerprint(config)
        recorded = state["settings"].get(experiment.name)
        changed = changed_settings(recorded, settings) if recorded is not None else {}
        if changed and run_dir.exists():
            check_data_exists(config.data)
            described = "; ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in changed.items())
            moved = set_aside(run_dir)
            log(f"{banner}: settings changed since it ran ({described}); old run kept as {moved.name}.")
            state["exported"].pop(experiment.name, None)
        if recorded is None or changed:
            state["settings"][experiment.name] = settings
            write_json(state_path, state)
        if config.folds:  # k-fold: fit_folds keeps the finished folds and resumes the rest
            log(f"{banner}: {config.backbone} ({resolved.schedule}), {config.folds} folds.")
            fit_folds(config, log=log)
            if export:
                log(f"{banner}: not exported: its {config.folds} folds are as many models; export one.")
            rows.append(summarize_folds(experiment.name, run_dir, experiment.reported))
            write_results(rows, out, plan, zoo if export else None)
            continue
        if Run(run_dir).finished:
            log(f"{banner}: finished earlier, skipped.")
        elif Run(run_dir).exists:
            log(f"{banner}: resuming the interrupted run in {run_dir}.")
            fit(load_run_config(run_dir), resume=True, log=log)
        else:
            if Run(run_dir).holds_other_files:
                raise UserError(
                    f"{run_dir} holds files that are not a kerasimg run, so experiment {experiment.name!r} "
                    "cannot train there; move them or choose another --out."
                )
            log(f"{banner}: {config.backbone} ({resolved.schedule}).")
            fit(config, log=log)
        row = summarize(experiment.name, run_dir, experiment.reported)
        if export:
            if experiment.name not in state["exported"]:
                from kerasimg.serving import export_run

                path = export_run(run_dir, f"{plan.name}-{experiment.name}", zoo)
                state["exported"][experiment.name] = str(path)
                write_json(state_path, state)
            row["exported"] = Path(state["exported"][experiment.name]).parent.name
        rows.append(row)
        write_results(rows, out, plan, zoo if export else None)
    return rows


def write_results(rows: list[dict], out: Path, plan: Plan, zoo: str | os.PathLike | None = None) -> None:
    write_csv(out / "results.csv", rows, COLUMNS)
    header = (
        f"# Plan {plan.name}\n\n{plan.description}\n\n" if plan.description else f"# Plan {plan.name}\n\n"
    )
    optimistic = any(r.get(selection.METRICS_KEY) for r in rows)
    write_text(out / "results.md", header + markdown_table(rows, COLUMNS) + selection.legend(optimistic))
    plot_comparison(rows, out / "curves.png", plan.name)
    _write_page(rows, out, plan, zoo)


def _write_page(rows: list[dict], out: Path, plan: Plan, zoo) -> None:
    """``report.html``: the results table and curves above every run's own report, side by side."""
    from kerasimg.diagnose.report import image, table, write_report

    intro = f"<p>{html.escape(plan.description)}</p>" if plan.description else ""
    results = f'<div class="scroll">{table(rows, COLUMNS)}</div>'
    intro += f"<h2>Results</h2>{results}{image(out / 'curves.png', 'validation curves')}"
    runs = [r["run_dir"] for r in rows if Run(r["run_dir"]).exists]
    write_report(runs, out / "report.html", title=f"Plan {plan.name}", intro=intro, zoo=zoo)


@reports.styled
def plot_comparison(rows: list[dict], path: Path, title: str) -> Path | None:
    """Validation loss and accuracy per epoch, one line per experiment."""
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for row in rows:
        history = [r for r in row["history"] if "val_loss" in r]
        epochs = [int(r["epoch"]) + 1 for r in history]
        axes[0].plot(epochs, [r["val_loss"] for r in history], "-o", ms=3, label=row["experiment"])
        axes[1].plot(epochs, [r["val_accuracy"] for r in history], "-o", ms=3, label=row["experiment"])
    for ax, name in zip(axes, ("validation loss", "validation accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1.02)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"plan {title}")
    return save_figure(fig, path)
