"""``python -m kerasimg.tune compound|recipe``: KerasTuner searches.

``compound`` trains a scaled EfficientNet for every feasible (alpha, beta, gamma) of a grid,
writes tuning/<project>/results.csv, results.md and search.png, and with ``--scale N`` the
parameters/FLOPs table of phi = 0..N for the best triple; ``--workers N`` runs KerasTuner's
chief and N workers on this machine. ``recipe`` searches the training recipe (learning rate,
weight decay, label smoothing, augmentation, warm-up, optimizer, lr schedule, freezing schedule)
for one backbone and data set, the seed and modern presets first, each trial a ``fit`` run,
and writes the winner as tuning/<project>/best.toml for ``fit --config``. Rerunning the same
command resumes either.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from kerasimg.cli import command_parser, run_cli
from kerasimg.data.augment import PRESETS
from kerasimg.errors import UserError
from kerasimg.training.recipe import RECIPES
from kerasimg.tuning.hypermodel import TrialTraining
from kerasimg.tuning.space import CompoundSpace, Triple

_SPACE, _TRAINING = CompoundSpace(), TrialTraining()


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 1.0,1.1,1.2, got {text!r}"
        ) from error


def _grid_default(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("python -m kerasimg.tune", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compound", help="grid-search alpha, beta, gamma under alpha*beta^2*gamma^2 ~ target")
    c.add_argument(
        "--space", metavar="TOML", help="search-space file (e.g. tuning/compound.toml); flags override it"
    )
    c.add_argument("--data", help=f"scenes[:TRAIN,TEST], a folder or tfds:NAME (default {_TRAINING.data})")
    c.add_argument("--phi", type=float, help=f"compound coefficient of the search (default {_SPACE.phi:g})")
    for name in ("alpha", "beta", "gamma"):
        c.add_argument(
            f"--{name}", type=_floats, help=f"grid values (default {_grid_default(getattr(_SPACE, name))})"
        )
    c.add_argument("--target", type=float, help=f"alpha*beta^2*gamma^2 aimed at (default {_SPACE.target:g})")
    c.add_argument("--tolerance", type=float, help=f"allowed |cost - target| (default {_SPACE.tolerance:g})")
    c.add_argument(
        "--base-resolution", type=int, help=f"resolution at phi=0 (default {_SPACE.base_resolution})"
    )
    c.add_argument("--epochs", type=int, help=f"epochs per trial (default {_TRAINING.epochs})")
    c.add_argument("--batch-size", type=int, help=f"default {_TRAINING.batch_size}")
    c.add_argument("--lr", type=float, help=f"peak learning rate (default {_TRAINING.lr:g})")
    c.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        help=f"training recipe of every trial, as fit's --recipe (default {_TRAINING.recipe})",
    )
    c.add_argument("--augment", help=f"a preset ({', '.join(PRESETS)}) or list (default: the recipe's)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--directory", default="tuning", help="KerasTuner's directory (default tuning)")
    c.add_argument("--project", default="compound", help="folder under --directory (default compound)")
    c.add_argument(
        "--overwrite", action="store_true", help="start over instead of resuming (never on a worker)"
    )
    c.add_argument("--scale", type=int, metavar="N", help="then tabulate phi = 0..N for the best triple")
    c.add_argument("--workers", type=int, metavar="N", help="run a chief and N workers on 127.0.0.1")
    c.add_argument("--dry-run", action="store_true", help="list the feasible triples and stop")
    _add_recipe_parser(sub)
    return p


def _add_recipe_parser(sub) -> None:
    from kerasimg.tuning.recipe_search import TUNERS, BaseTraining, RecipeSearch

    base, search = BaseTraining(), RecipeSearch()
    r = sub.add_parser(
        "recipe",
        help="search lr, weight decay, smoothing, augmentation, warm-up, optimizer, lr and freezing schedule",
    )
    r.add_argument("--backbone", default=base.backbone, help=f"as fit's (default {base.backbone})")
    r.add_argument("--data", default=base.data, help=f"as fit's (default {base.data})")
    r.add_argument("--weights", default=base.weights, help=f"as fit's (default {base.weights})")
    r.add_argument("--image-size", type=int, help="as fit's (default: the backbone's)")
    r.add_argument("--batch-size", type=int, default=base.batch_size, help=f"default {base.batch_size}")
    r.add_argument(
        "--epochs", type=int, default=base.epochs, help=f"the most any trial trains (default {base.epochs})"
    )
    r.add_argument(
        "--patience",
        type=int,
        default=base.patience,
        help=f"a trial stops after this many epochs without a better val accuracy (default {base.patience})",
    )
    r.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=base.recipe,
        help=f"the preset for what the space leaves alone: EMA, layer decay, TTA (default {base.recipe})",
    )
    r.add_argument(
        "--val-split",
        type=float,
        default=base.val_split,
        help=f"as fit's: the trials are ranked on this validation split (default {base.val_split})",
    )
    r.add_argument(
        "--tuner",
        choices=TUNERS,
        default="auto",
        help="default auto: hyperband with pretrained weights, bayesian from scratch",
    )
    r.add_argument(
        "--trials", type=int, default=search.trials, help=f"bayesian: how many (default {search.trials})"
    )
    r.add_argument(
        "--factor",
        type=int,
        default=search.factor,
        help=f"hyperband's reduction factor (default {search.factor})",
    )
    r.add_argument(
        "--max-minutes",
        type=float,
        help="start no trial after this many minutes (the running one finishes); rerun to continue",
    )
    r.add_argument("--space", metavar="TOML", help="search-space file (keys: docs/recipe-search.md)")
    r.add_argument("--seed", type=int, default=base.seed)
    r.add_argument("--directory", default="tuning", help="KerasTuner's directory (default tuning)")
    r.add_argument("--project", default="recipe", help="folder under --directory (default recipe)")
    r.add_argument(
        "--overwrite", action="store_true", help="start over instead of resuming (never on a worker)"
    )
    r.add_argument("--workers", type=int, metavar="N", help="run a chief and N workers on 127.0.0.1")


def recipe_search_from_args(args: argparse.Namespace):
    from kerasimg.tuning.recipe_search import BaseTraining, RecipeSearch
    from kerasimg.tuning.recipe_space import RecipeSpace, read_recipe_space

    training = BaseTraining(
        backbone=args.backbone,
        data=args.data,
        weights=args.weights,
        image_size=args.image_size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        recipe=args.recipe,
        patience=args.patience,
        seed=args.seed,
        val_split=args.val_split,
    )
    space = RecipeSpace(**(read_recipe_space(args.space) if args.space else {}))
    return RecipeSearch(
        directory=args.directory,
        project=args.project,
        overwrite=args.overwrite,
        training=training,
        space=space,
        tuner=args.tuner,
        trials=args.trials,
        factor=args.factor,
        max_minutes=args.max_minutes,
    )


def search_from_args(args: argparse.Namespace):
    """The search the flags describe (``CompoundSearch.from_settings`` does the checking)."""
    from kerasimg.tuning.search import CompoundSearch

    names = ("phi", "alpha", "beta", "gamma", "target", "tolerance", "base_resolution")
    names += tuple(f.name for f in dataclasses.fields(TrialTraining))
    return CompoundSearch.from_settings(
        args.space,
        directory=args.directory,
        project=args.project,
        overwrite=args.overwrite,
        **{name: getattr(args, name, None) for name in names},
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def run() -> int:
        if args.command == "recipe":
            return _recipe(args, argv)
        search = search_from_args(args)
        triples = search.space.require_feasible()
        if args.scale is not None and args.scale < 0:
            raise UserError(f"--scale must be >= 0. Received: scale={args.scale}")
        if args.dry_run:
            print(f"{len(triples)} feasible of {search.space.grid_size}:")
            for t in triples:
                print(f"  {t.label()}  cost {t.cost:.3f}  resolution {search.space.resolution(t)}")
            return 0
        project = search.project_dir
        if args.workers is not None and _start_workers(search, argv, args.workers, search.remaining(triples)):
            _show(project, "results.md", "scaling.md")
            return 0
        from kerasimg.tuning.search import distributed_role, failed_rows, run_search

        rows = run_search(search)
        if distributed_role() == "worker":
            return 0
        _show(project, "results.md")
        failed = failed_rows(rows)
        if failed:
            print(
                f"error: {len(failed)} trial(s) failed ({', '.join(r['trial'] for r in failed)}); their "
                f"tracebacks are in {project}/trial_*/trial.json. Rerun the same command to retry those "
                "that did not fail for their triple's own sake.",
                file=sys.stderr,
            )
            return 1
        if args.scale is not None:
            _scale(rows, args.scale, search.space.base_resolution, project)
            _show(project, "scaling.md")
        return 0

    return run_cli(run, "Rerun the same command to resume the search (completed trials are kept).")


def _recipe(args: argparse.Namespace, argv: list[str]) -> int:
    from kerasimg.tuning.project import distributed_role
    from kerasimg.tuning.recipe_results import BEST_CONFIG
    from kerasimg.tuning.recipe_search import run_recipe_search

    search = recipe_search_from_args(args)
    project = search.project_dir
    if args.workers is not None:
        search.validate()  # a mistake is one line here, not three processes' logs
        left = search.remaining()
        _start_workers(search, argv, args.workers, args.workers if left is None else left)
        rows = None
    else:
        rows = run_recipe_search(search)
        if distributed_role() == "worker":
            return 0
    _show(project, "results.md")
    if (project / BEST_CONFIG).exists() and (rows is None or (rows and rows[0].get("best") == "*")):
        print(f"Train the best recipe: python -m kerasimg.fit --config {project / BEST_CONFIG}")
        return 0
    print(
        f"error: no trial completed; their tracebacks are in {project}/trial_*/trial.json.", file=sys.stderr
    )
    return 1


def _start_workers(search, argv: list[str], requested: int, remaining: int) -> int:
    """Run KerasTuner's chief and up to ``requested`` workers (no more than ``remaining`` trials) with
    this command's flags, holding the project's lock; returns how many workers ran (0: none needed)."""
    from kerasimg.tuning.workers import run_local, strip_flag, worker_count

    workers = worker_count(requested, remaining)
    if workers:  # the chief, started with these flags, writes every file
        with search.lock():
            run_local(strip_flag(argv, "--workers", takes_value=True), workers, f"{search.project_dir}.logs")
    return workers


def _scale(rows: list[dict], max_phi: int, base_resolution: int, project: Path) -> None:
    from kerasimg.tuning.scaling import scale_rows, write_scale_table

    best = next((r for r in rows if r.get("best") == "*"), None)
    if best is None:
        raise UserError(f"No completed trial in {project} to scale; run the search first.")
    triple = Triple(best["alpha"], best["beta"], best["gamma"])
    print(f"Scaling {triple.label()} for phi = 0..{max_phi}:")
    write_scale_table(scale_rows(triple, max_phi, base_resolution), triple, project)


def _show(project: Path, *names: str) -> None:
    """Print the Markdown tables that exist, then where the files are."""
    for name in names:
        if (project / name).exists():
            print("\n" + (project / name).read_text())
    files = ["results.csv", "results.md", "search.png", "scaling.md", "scaling.csv", "best.toml"]
    print(f"Files: {project}/ ({', '.join(f for f in files if (project / f).exists())})")


if __name__ == "__main__":
    sys.exit(main())
