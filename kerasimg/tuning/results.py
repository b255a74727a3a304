"""What a compound search leaves for people: results.csv, results.md and search.png.

Rows come from KerasTuner's own trial records (the oracle), so the files can be
rewritten at any time, after each trial or from a finished search directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kerasimg.files import save_figure, write_text  # noqa: E402
from kerasimg.tables import markdown_table, write_csv  # noqa: E402
from kerasimg.training.reports import styled  # noqa: E402
from kerasimg.tuning.oracle import OBJECTIVE  # noqa: E402
from kerasimg.tuning.space import Triple  # noqa: E402

COLUMNS = [
    ("best", "best", ""),
    ("trial", "trial", ""),
    ("alpha", "alpha", "g"),
    ("beta", "beta", "g"),
    ("gamma", "gamma", "g"),
    ("cost", "a*b^2*g^2", ".3f"),
    ("depth", "depth x", ".3f"),
    ("width", "width x", ".3f"),
    ("resolution", "resolution", ".0f"),
    (OBJECTIVE, "val accuracy", ".4f"),
    ("val_loss", "val loss", ".4f"),
    ("params", "parameters", ",.0f"),
    ("gflops", "GFLOPs", ".3f"),
    ("train_seconds", "train s", ".1f"),
    ("status", "status", ""),
]


def trial_rows(oracle) -> list[dict]:
    """One row per trial: completed ones by validation accuracy (best first, marked), then the rest."""
    rows = []
    for trial in oracle.trials.values():
        values = trial.hyperparameters.values
        row = {
            "trial": trial.trial_id,
            "status": trial.status,
            **{k: float(values[k]) for k in ("alpha", "beta", "gamma")},
        }
        row["cost"] = Triple(row["alpha"], row["beta"], row["gamma"]).cost
        for name in (
            OBJECTIVE,
            "val_loss",
            "params",
            "flops",
            "resolution",
            "width",
            "depth",
            "train_seconds",
        ):
            if trial.metrics.exists(name):
                row[name] = trial.metrics.get_last_value(name)
        if "flops" in row:
            row["gflops"] = row["flops"] / 1e9
        rows.append(row)
    done = [r for r in rows if r["status"] == "COMPLETED" and r.get(OBJECTIVE) is not None]
    rest = [r for r in rows if r not in done]
    done.sort(key=lambda r: (-r[OBJECTIVE], r.get("flops", 0.0), r["trial"]))
    if done:
        done[0]["best"] = "*"
    return done + sorted(rest, key=lambda r: r["trial"])


def write_results(oracle, project_dir: str | os.PathLike) -> list[dict]:
    project_dir = Path(project_dir)
    rows = trial_rows(oracle)
    write_csv(project_dir / "results.csv", rows, COLUMNS)
    done = sum(r["status"] == "COMPLETED" for r in rows)
    header = (
        f"# Compound-scaling search: {project_dir.name}\n\n"
        f"{done} of {oracle.max_trials} feasible triples trained; sorted by validation accuracy, "
        "the best marked `*`. FLOPs count a multiply-add as 2.\n\n"
    )
    write_text(project_dir / "results.md", header + markdown_table(rows, COLUMNS))
    plot_search(rows, project_dir / "search.png", title=project_dir.name)
    return rows


@styled
def plot_search(rows: list[dict], path: str | os.PathLike, title: str = "") -> Path | None:
    """Validation accuracy against GFLOPs, each point labelled by its triple, the best in red."""
    points = [r for r in rows if r.get(OBJECTIVE) is not None and r.get("gflops") is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in points:
        best = r.get("best") == "*"
        ax.scatter(r["gflops"], r[OBJECTIVE], s=60 if best else 30, color="tab:red" if best else "tab:blue")
        ax.annotate(
            f"{r['alpha']:g}/{r['beta']:g}/{r['gamma']:g}",
            (r["gflops"], r[OBJECTIVE]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    ax.set_xlabel("GFLOPs per image")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{title}: alpha/beta/gamma" if title else "alpha/beta/gamma")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
