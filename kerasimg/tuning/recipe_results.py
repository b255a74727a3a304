"""What ``tune recipe`` leaves: results.csv and results.md (best first), search.png, and best.toml.

Rows come from KerasTuner's trial records, so the files can be rewritten from a search folder at
any time. Only the winner's test accuracy is shown: every trial was chosen on validation, and a
column of test accuracies invites choosing on the test split. ``best.toml`` is the winner as a
``fit --config`` file: the base settings, the trial's recipe and the epochs it was given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kerasimg.files import save_figure, write_text
from kerasimg.tables import markdown_table, write_csv
from kerasimg.training.reports import plt, styled
from kerasimg.tuning.oracle import OBJECTIVE
from kerasimg.tuning.recipe_space import fit_settings

BEST_CONFIG = "best.toml"
COLUMNS = [
    ("best", "best", ""),
    ("trial", "trial", ""),
    ("preset", "preset", ""),
    ("lr", "lr", ".3g"),
    ("weight_decay", "weight decay", ".2g"),
    ("label_smoothing", "label smoothing", ".3f"),
    ("augment", "augment", ""),
    ("warmup_epochs", "warm-up", "g"),
    ("optimizer", "optimizer", ""),
    ("lr_schedule", "lr schedule", ""),
    ("schedule", "schedule", ""),
    ("budget", "epochs given", "d"),
    ("epochs_trained", "epochs trained", ".0f"),
    (OBJECTIVE, "best val accuracy", ".4f"),
    ("test_accuracy", "test accuracy (best only)", ".4f"),
    ("train_seconds", "train s", ".0f"),
    ("status", "status", ""),
]


def trial_rows(oracle, presets: dict[str, dict] | None = None) -> list[dict]:
    """One row per trial: completed ones by validation accuracy (best first, marked), then the rest.

    ``presets`` are the preset recipes by name as points of the space (``RecipeSpace.preset_points``),
    named in the ``preset`` column: on a tie they rank first, so a draw replaces a preset only when
    validation says it is better. A small or easy validation split ties often (on scikit-learn's
    digits seven trials reached 100%), and then the recipe a user would have used anyway is the one
    to keep.
    """
    rows = []
    for trial in oracle.trials.values():
        values = trial.hyperparameters.values
        row = {"trial": trial.trial_id, "status": trial.status, "values": values, **fit_settings(values)}
        row["preset"] = _preset_name(values, presets or {})
        row["budget"] = int(values.get("tuner/epochs", 0)) or None
        for name in (OBJECTIVE, "epochs_trained", "train_seconds", "test_accuracy"):
            if trial.metrics.exists(name):
                row[name] = trial.metrics.get_last_value(name)
        rows.append(row)
    done = [r for r in rows if r["status"] == "COMPLETED" and r.get(OBJECTIVE) is not None]
    rest = [r for r in rows if r not in done]
    # Ties go to a preset, then to the cheaper trial: fewer epochs trained, then the earlier one.
    done.sort(key=lambda r: (-r[OBJECTIVE], not r["preset"], r.get("epochs_trained", 0), r["trial"]))
    for row in done[1:]:
        row.pop("test_accuracy", None)
    if done:
        done[0]["best"] = "*"
    for row in rest:
        row.pop("test_accuracy", None)
    return done + sorted(rest, key=lambda r: r["trial"])


def _preset_name(values: dict, presets: dict[str, dict]) -> str:
    """The preset whose point ``values`` are (a trial's values also hold the tuner's own keys), or ''."""
    return next((name for name, point in presets.items() if point.items() <= values.items()), "")


def best_config(row: dict, search) -> str:
    """The winner as TOML for ``fit --config``: base settings, its recipe and its epochs (``search``
    is the ``RecipeSearch``).

    Early stopping is left out (commented): it spared the search time, but on a small validation
    split it also ended runs while they were still learning (from scratch on ``scenes:30,100`` the
    seed preset's trial stopped at 54% test accuracy, the preset trained 30 epochs reached 79%), so
    the winner trains its whole budget, as a preset does."""
    base = search.training
    epochs = row.get("budget") or base.epochs
    values = {
        "backbone": base.backbone,
        "data": base.data,
        "weights": base.weights,
        "image_size": base.image_size,
        "batch_size": base.batch_size,
        "epochs": epochs,
        "recipe": base.recipe,
        "seed": base.seed,
        "val_split": base.val_split,
        **fit_settings(row["values"]),
    }
    lines = [
        f"# tune recipe: trial {row['trial']} of {search.project_dir}, best validation accuracy "
        f"{row[OBJECTIVE]:.4f}.",
        f"# Train it: python -m kerasimg.fit --config {search.project_dir / BEST_CONFIG}",
        f"# Trials stopped after {base.patience} epoch(s) without a better validation accuracy; the winner "
        "trains its whole budget.",
        f"# early_stop = {base.patience}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def write_recipe_results(oracle, search) -> list[dict]:
    project_dir = search.project_dir
    rows = trial_rows(oracle, search.space.preset_points(search.training.pretrained))
    write_csv(project_dir / "results.csv", rows, COLUMNS)
    done = sum(r["status"] == "COMPLETED" for r in rows)
    header = (
        f"# Recipe search: {project_dir.name}\n\n"
        f"{search.training.backbone} on {search.training.data} (weights {search.training.weights}), "
        f"{search.tuner}: {done} trial(s) completed, sorted by their best validation accuracy, the best "
        "marked `*`.\n\n"
    )
    write_text(project_dir / "results.md", header + markdown_table(rows, COLUMNS))
    if rows and rows[0].get("best") == "*":
        write_text(project_dir / BEST_CONFIG, best_config(rows[0], search))
    plot_recipe_search(rows, project_dir / "search.png", project_dir.name)
    return rows


@styled
def plot_recipe_search(rows: list[dict], path: str | os.PathLike, title: str = "") -> Path | None:
    """Best validation accuracy against the learning rate, one colour per schedule, the winner circled."""
    points = [r for r in rows if r.get(OBJECTIVE) is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for schedule in sorted({r["schedule"] for r in points}):
        mine = [r for r in points if r["schedule"] == schedule]
        ax.scatter([r["lr"] for r in mine], [r[OBJECTIVE] for r in mine], s=30, label=schedule)
    best = points[0] if points[0].get("best") == "*" else None
    if best is not None:
        ax.scatter(
            [best["lr"]], [best[OBJECTIVE]], s=160, facecolors="none", edgecolors="black", label="best"
        )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("best validation accuracy")
    ax.set_title(f"{title}: one point per trial" if title else "one point per trial")
    ax.legend()
    return save_figure(fig, path)
