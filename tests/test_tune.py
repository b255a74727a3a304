"""The compound-scaling search: feasible grid, KerasTuner oracle, results, resume, chief/worker."""

from __future__ import annotations

import csv
import dataclasses
import functools
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner
import pytest
from fake_compound_trials import FakeHyperModel, fake_score
from helpers import ANSI_ESCAPE

import kerasimg.tuning.search as search_module
import kerasimg.tuning.workers as workers_module
from kerasimg.errors import UserError
from kerasimg.tune import main
from kerasimg.tuning.hypermodel import CompoundHyperModel, TrialTraining
from kerasimg.tuning.search import CompoundSearch, failed_rows, run_search
from kerasimg.tuning.space import CompoundSpace, Triple, read_space_file

REPO = Path(__file__).resolve().parents[1]
GRID = dict(alpha=(1.0, 1.1, 1.2, 1.3, 1.4), beta=(1.0, 1.1, 1.2), gamma=(1.0, 1.1, 1.2))
GRID_FLAGS = ["--alpha", "1,1.1,1.2,1.3,1.4", "--beta", "1,1.1,1.2", "--gamma", "1,1.1,1.2"]
QUIET = dict(log=lambda *a: None)


def brute_force_feasible(alpha, beta, gamma, target, tolerance):
    return {
        (a, b, g)
        for a, b, g in itertools.product(alpha, beta, gamma)
        if abs(a * b * b * g * g - target) <= tolerance + 1e-9
    }


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_feasible_set_is_the_constrained_part_of_the_grid():
    space = CompoundSpace(**GRID, target=2.0, tolerance=0.1)
    feasible = {(t.alpha, t.beta, t.gamma) for t in space.feasible()}
    assert feasible == brute_force_feasible(*GRID.values(), 2.0, 0.1)
    assert 0 < len(feasible) < len(space.grid()) == 45
    assert all(min(t) >= 1 for t in feasible)


def test_shipped_space_file_is_the_builtin_default_and_holds_the_papers_triple():
    values = read_space_file(REPO / "tuning" / "compound.toml")
    space = CompoundSpace(**{k: v for k, v in values.items() if k != "epochs"})
    assert space == CompoundSpace()
    assert Triple(1.2, 1.1, 1.15) in space.feasible()


def test_space_file_with_unknown_key_names_it(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text("alpha = [1.0, 1.2]\nbeta_values = [1.0]\n")
    with pytest.raises(UserError, match="beta_values"):
        read_space_file(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alpha=(0.9, 1.2)), "alpha values must be finite and >= 1"),
        (dict(alpha=(1.0,), beta=(1.0,), gamma=(1.0,)), "nearest is a1 b1 g1 with 1.000"),
        (dict(base_resolution=16), "base-resolution"),
    ],
)
def test_bad_space_is_refused_before_any_trial(kwargs, message):
    with pytest.raises(UserError, match=message):
        CompoundSpace(**kwargs).require_feasible()


def _search(tmp_path, overwrite=False, **space):
    return CompoundSearch(
        space=CompoundSpace(**(space or GRID)),
        training=TrialTraining(),
        directory=str(tmp_path / "tuning"),
        project="p",
        overwrite=overwrite,
        verbose=0,
    )


def test_search_trains_exactly_the_feasible_triples_once(tmp_path):
    fake = FakeHyperModel()
    rows = run_search(_search(tmp_path), hypermodel=fake, log=lambda *a: None)
    expected = brute_force_feasible(*GRID.values(), 2.0, 0.1)
    assert len(fake.built) == len(expected)
    assert set(fake.built) == expected
    assert len(rows) == len(expected) and all(r["status"] == "COMPLETED" for r in rows)
    best = max(expected, key=lambda t: fake_score(*t))
    assert (rows[0]["alpha"], rows[0]["beta"], rows[0]["gamma"]) == best and rows[0]["best"] == "*"
    assert [r["val_accuracy"] for r in rows] == sorted((r["val_accuracy"] for r in rows), reverse=True)
    # KerasTuner's own records carry the coefficients as hyperparameters.
    trial_files = list((tmp_path / "tuning" / "p").glob("trial_*/trial.json"))
    assert len(trial_files) == len(expected)
    assert '"alpha"' in trial_files[0].read_text()
    csv_rows = read_rows(tmp_path / "tuning" / "p" / "results.csv")
    assert len(csv_rows) == len(expected) and [r["best"] for r in csv_rows].count("*") == 1


def test_interrupted_search_resumes_without_redoing_trials(tmp_path):
    expected = brute_force_feasible(*GRID.values(), 2.0, 0.1)
    crashing = FakeHyperModel(crash_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        run_search(_search(tmp_path), hypermodel=crashing, log=lambda *a: None)
    finished = set(crashing.built[:2])
    assert len(read_rows(tmp_path / "tuning" / "p" / "results.csv")) >= 2  # written after each trial

    resumed = FakeHyperModel()
    rows = run_search(_search(tmp_path), hypermodel=resumed, log=lambda *a: None)
    assert set(resumed.built) == expected - finished
    assert len(resumed.built) == len(expected) - 2
    assert crashing.built[2] in resumed.built  # the interrupted trial is retried
    assert sorted((r["alpha"], r["beta"], r["gamma"]) for r in rows) == sorted(expected)

    again = FakeHyperModel()
    run_search(_search(tmp_path, overwrite=True), hypermodel=again, log=lambda *a: None)
    assert len(again.built) == len(expected)


def test_resuming_with_another_grid_is_refused(tmp_path):
    run_search(_search(tmp_path), hypermodel=FakeHyperModel(), log=lambda *a: None)
    other = dict(GRID, gamma=(1.0, 1.05, 1.1))
    with pytest.raises(UserError, match="different grid"):
        run_search(_search(tmp_path, **other), hypermodel=FakeHyperModel(), log=lambda *a: None)


def test_a_worker_never_clears_the_shared_directory(tmp_path, monkeypatch):
    run_search(_search(tmp_path), hypermodel=FakeHyperModel(), **QUIET)
    seen = {}

    class Recorder:
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            raise RuntimeError("stop here")

    monkeypatch.setattr(search_module, "CompoundTuner", Recorder)
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker0")
    notes = []
    with pytest.raises(RuntimeError, match="stop here"):
        run_search(_search(tmp_path, overwrite=True), hypermodel=FakeHyperModel(), log=notes.append)
    assert seen["overwrite"] is False
    assert any("--overwrite ignored on a worker" in n for n in notes)
    assert (tmp_path / "tuning" / "p" / "oracle.json").is_file()


def test_tiny_real_search_writes_results_table_and_plot_and_a_quiet_log(tiny_scenes, tmp_path, capfd):
    space = CompoundSpace(alpha=(1.0, 1.4), beta=(1.2,), gamma=(1.0, 1.2), base_resolution=32)
    assert space.feasible() == [Triple(1.0, 1.2, 1.2), Triple(1.4, 1.2, 1.0)]  # 2 of a grid of 4
    training = TrialTraining(data=str(tiny_scenes), epochs=1, batch_size=16)
    search = CompoundSearch(
        space=space, training=training, directory=str(tmp_path / "tuning"), project="tiny"
    )
    hypermodel = CompoundHyperModel(training, space.base_resolution, run_eagerly=True)
    rows = run_search(search, hypermodel=hypermodel, log=lambda *a: None)
    # Printed as into a log file (`kerasimg tune ... | tee log`): neither Keras's progress bar nor
    # KerasTuner's notebook "clear" (it took an installed IPython for a notebook) draws escapes.
    out, err = capfd.readouterr()  # TensorFlow's native lines are the CLI's filter's (test_startup.py)
    assert not ANSI_ESCAPE.search(out + err), repr(out[:2000])
    epoch_lines = re.findall(r"^\d+/\d+ - .* - val_accuracy: [\d.]+", out, re.M)
    assert len(epoch_lines) == 2, out[-3000:]  # one finished line per trial epoch, as fit prints in a log

    project = tmp_path / "tuning" / "tiny"
    csv_rows = read_rows(project / "results.csv")
    assert len(rows) == len(csv_rows) == 2
    for row in csv_rows:
        assert row["status"] == "COMPLETED"
        assert int(float(row["resolution"])) == round(32 * float(row["gamma"]))
        assert 0 <= float(row["val_accuracy"]) <= 1
        assert float(row["params"]) > 1e5 and float(row["gflops"]) > 0 and float(row["train_seconds"]) > 0
    deeper = {float(r["alpha"]): float(r["params"]) for r in csv_rows}
    assert deeper[1.4] > deeper[1.0]  # alpha adds blocks at equal width
    text = (project / "results.md").read_text()
    assert text.count("| COMPLETED |") == 2 and "| * |" in text
    assert (project / "search.png").stat().st_size > 5_000


def test_scale_table_follows_the_compound_rule(tmp_path):
    from kerasimg.tuning.scaling import scale_rows, write_scale_table

    triple = Triple(1.2, 1.1, 1.15)
    rows = scale_rows(triple, 2, base_resolution=32, log=lambda *a: None)
    assert [r["resolution"] for r in rows] == [32, round(32 * 1.15), round(32 * 1.15**2)]
    assert rows[0]["flops_growth"] == 1.0
    assert rows[0]["flops"] < rows[1]["flops"] < rows[2]["flops"]
    assert rows[0]["params"] < rows[1]["params"] < rows[2]["params"]
    assert rows[2]["ideal_growth"] == pytest.approx(triple.cost**2)
    write_scale_table(rows, triple, tmp_path)
    assert len(read_rows(tmp_path / "scaling.csv")) == 3
    assert "2^phi" in (tmp_path / "scaling.md").read_text()


def test_cli_dry_run_lists_feasible_triples(capsys):
    argv = ["compound", "--alpha", "1,1.4", "--beta", "1.2", "--gamma", "1,1.2", "--base-resolution", "64"]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 feasible of 4")
    assert "a1 b1.2 g1.2  cost 2.074  resolution 77" in out and "a1.4 b1.2 g1" in out


def test_cli_bad_grid_exits_2_naming_the_value(capsys, tmp_path):
    assert main(["compound", "--alpha", "0.5,1.2", "--directory", str(tmp_path)]) == 2
    assert "alpha=0.5,1.2" in capsys.readouterr().err
    assert not (tmp_path / "compound").exists()


def test_chief_and_two_workers_run_every_trial_exactly_once(tmp_path, monkeypatch):
    """KerasTuner's chief/worker mode on 127.0.0.1 with fast fake trials (the chief polls every 20 s)."""
    from kerasimg.tuning.workers import run_local

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    directory = tmp_path / "tuning"
    argv = ["compound", "--alpha", "1.0,1.2,1.4", "--beta", "1.0,1.1,1.2", "--gamma", "1.0,1.1,1.2"]
    argv += ["--directory", str(directory), "--project", "dist", "--overwrite"]
    assert (
        run_local(argv, 2, directory / "dist.logs", module="fake_compound_trials", log=lambda *a: None) == 0
    )

    expected = brute_force_feasible((1.0, 1.2, 1.4), (1.0, 1.1, 1.2), (1.0, 1.1, 1.2), 2.0, 0.1)
    markers = [p.name for p in (directory / "ran").iterdir()]
    done = [tuple(float(v) for v in m.split(".worker")[0].split("-")) for m in markers]
    assert sorted(done) == sorted(expected)  # every feasible triple once, none twice
    assert all(".worker" in m for m in markers)  # trained by workers, never by the chief
    assert len({m.split(".")[-2] for m in markers}) == 2  # both workers took trials
    rows = read_rows(directory / "dist" / "results.csv")
    assert len(rows) == len(expected) and all(r["status"] == "COMPLETED" for r in rows)


# Hardening (issue 21): paths, failed trials, stale settings, locks, worker processes.


@pytest.mark.parametrize("project", ["", ".", "..", "../outside", "a/b", str(Path("/tmp/kerasimg-abs"))])
def test_project_must_be_one_folder_name_inside_the_directory(tmp_path, project):
    search = _search(tmp_path)
    search.project = project
    with pytest.raises(UserError, match="project_name="):
        run_search(search, hypermodel=FakeHyperModel(), **QUIET)
    assert not (tmp_path / "outside").exists() and not (tmp_path / "tuning" / "untitled_project").exists()
    assert not Path("/tmp/kerasimg-abs").exists()


def test_cli_refuses_an_empty_project_before_anything_runs(tmp_path, capsys):
    assert main(["compound", "--directory", str(tmp_path), "--project", "", "--dry-run"]) == 2
    assert "project_name=''" in capsys.readouterr().err


def test_overwrite_deletes_only_a_folder_that_holds_a_search(tmp_path):
    mine = tmp_path / "tuning" / "notes"
    mine.mkdir(parents=True)
    (mine / "README.md").write_text("keep me")
    search = _search(tmp_path, overwrite=True)
    search.project = "notes"
    with pytest.raises(UserError, match=r"has none, so it was left alone.*project='notes'"):
        run_search(search, hypermodel=FakeHyperModel(), **QUIET)
    assert (mine / "README.md").read_text() == "keep me"


def test_directory_that_is_a_file_is_one_clear_error(tmp_path):
    path = tmp_path / "tuning"
    path.write_text("not a folder")
    search = CompoundSearch(
        space=CompoundSpace(**GRID), training=TrialTraining(), directory=str(path), project="p", verbose=0
    )
    with pytest.raises(UserError, match="--directory must be a folder.*is a file"):
        run_search(search, hypermodel=FakeHyperModel(), **QUIET)


@pytest.mark.parametrize(
    "flags, space, message",
    [
        (["--data", "{tmp}/missing"], "", "missing"),
        ([], 'augment = "rotate"\n', "'rotate' is neither"),
        (["--lr", "0"], "", "--lr must be positive"),
    ],
)
def test_a_user_error_stops_the_search_before_any_trial(tmp_path, capsys, flags, space, message):
    directory = tmp_path / "tuning"
    argv = ["compound", "--alpha", "1,1.4", "--beta", "1.2", "--gamma", "1,1.2", "--base-resolution", "32"]
    argv += ["--epochs", "1", "--directory", str(directory), "--project", "p"]
    argv += [f.format(tmp=tmp_path) for f in flags]
    if space:
        (tmp_path / "space.toml").write_text(space)
        argv += ["--space", str(tmp_path / "space.toml")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(directory.glob("p/trial_*"))


def test_a_failed_trial_is_retried_next_run_unless_its_triple_failed_it(tmp_path):
    expected = sorted(brute_force_feasible(*GRID.values(), 2.0, 0.1))
    broken, infeasible = expected[0], expected[1]
    fails = {broken: OSError("disk full"), infeasible: keras_tuner.errors.FailedTrialError("too big")}
    rows = run_search(_search(tmp_path), hypermodel=FakeHyperModel(fail=fails), **QUIET)
    assert sorted((r["alpha"], r["beta"], r["gamma"]) for r in failed_rows(rows)) == [broken, infeasible]

    again = FakeHyperModel()
    rows = run_search(_search(tmp_path), hypermodel=again, **QUIET)
    assert again.built == [broken]  # the disk was full; the triple that was too big stays failed
    status = {(r["alpha"], r["beta"], r["gamma"]): r["status"] for r in rows}
    assert status[broken] == "COMPLETED" and status[infeasible] == "FAILED"
    assert len(rows) == len(expected)


def test_cli_exits_1_and_lists_every_failure_when_trials_fail(tmp_path, monkeypatch, capsys):
    expected = sorted(brute_force_feasible(*GRID.values(), 2.0, 0.1))
    fails = {t: RuntimeError("out of memory") for t in expected[:3]}  # KerasTuner stops after 3 in a row
    real = search_module.run_search
    monkeypatch.setattr(
        search_module, "run_search", functools.partial(real, hypermodel=FakeHyperModel(fail=fails))
    )
    assert main(["compound", *GRID_FLAGS, "--directory", str(tmp_path), "--project", "p"]) == 1
    assert "error: 3 trial(s) failed" in capsys.readouterr().err
    statuses = [r["status"] for r in read_rows(tmp_path / "p" / "results.csv")]
    assert statuses.count("FAILED") == 3


def test_a_second_runner_on_one_project_is_refused_with_the_holders_pid(tmp_path):
    holder = _search(tmp_path)
    with holder.lock():
        with pytest.raises(UserError, match=f"in use by another kerasimg process \\(PID {os.getpid()}\\)"):
            run_search(_search(tmp_path), hypermodel=FakeHyperModel(), **QUIET)
    assert not (tmp_path / "tuning" / "p" / "oracle.json").exists()
    run_search(_search(tmp_path), hypermodel=FakeHyperModel(), **QUIET)  # released at the end


@pytest.mark.parametrize(
    "change, key",
    [
        (dict(epochs=1), "epochs"),
        (dict(lr=0.01), "lr"),
        (dict(data="scenes:5,2"), "data"),
        (dict(base_resolution=64), "base_resolution"),
    ],
)
def test_resuming_with_other_settings_is_refused_naming_them(tmp_path, change, key):
    run_search(_search(tmp_path), hypermodel=FakeHyperModel(), **QUIET)
    search = _search(tmp_path)
    if key == "base_resolution":
        search.space = CompoundSpace(**GRID, **change)
    else:
        search.training = dataclasses.replace(search.training, **change)
    again = FakeHyperModel()
    with pytest.raises(UserError, match=f"other settings \\({key}: .*--overwrite"):
        run_search(search, hypermodel=again, **QUIET)
    assert again.built == []


def test_workers_are_capped_at_the_trials_left(tmp_path, monkeypatch, capsys):
    expected = brute_force_feasible(*GRID.values(), 2.0, 0.1)
    search = CompoundSearch(
        space=CompoundSpace(**GRID), training=TrialTraining(), directory=str(tmp_path), project="p", verbose=0
    )
    with pytest.raises(KeyboardInterrupt):
        run_search(search, hypermodel=FakeHyperModel(crash_on_call=3), **QUIET)
    started = []
    monkeypatch.setattr(workers_module, "run_local", lambda argv, n, *a, **k: started.append(n) or 0)
    argv = ["compound", *GRID_FLAGS, "--directory", str(tmp_path), "--project", "p", "--workers", "64"]
    assert main(argv) == 0
    assert started == [len(expected) - 2]
    assert f"--workers 64 capped at {len(expected) - 2}" in capsys.readouterr().out

    run_search(search, hypermodel=FakeHyperModel(), **QUIET)
    started.clear()
    assert main(argv) == 0
    assert started == []  # nothing left: no process is started


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_workers_end_with_their_parent(tmp_path, signum):
    tests, pids = Path(__file__).parent, tmp_path / "pids"
    pids.mkdir()
    code = (
        "from kerasimg.tuning.workers import run_local; "
        f"run_local([{str(pids)!r}], 2, {str(tmp_path / 'logs')!r}, module='sleeping_tuner', log=print)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests), str(REPO)]))
    parent = subprocess.Popen([sys.executable, "-c", code], env=env)
    children = []
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.glob("*.pid"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        children = [int(p.read_text()) for p in pids.glob("*.pid")]
        assert len(children) == 3 and all(_alive(pid) for pid in children)
        parent.send_signal(signum)
        parent.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in children)
    finally:
        for pid in [parent.pid, *children]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    "text, message",
    [
        ('phi = "one"', "'phi' must be a number"),
        ('tolerance = "0.1"', "'tolerance' must be a number"),
        ("target = [2.0]", "'target' must be a number"),
        ('base_resolution = "224"', "'base_resolution' must be an integer"),
        ("base_resolution = 32.7", "'base_resolution' must be an integer"),
        ('epochs = "3"', "'epochs' must be an integer"),
        ('alpha = "12"', "'alpha' must be a number or a list of numbers"),
        ("beta = [1.0, true]", "'beta' must be a number or a list of numbers"),
    ],
)
def test_space_file_values_are_typed_with_file_line_and_key(tmp_path, text, message):
    path = tmp_path / "space.toml"
    path.write_text(f"# a search space\n\n{text}\n")
    with pytest.raises(UserError, match=message) as error:
        read_space_file(path)
    assert f"{path}, line 3:" in str(error.value)


def test_space_that_is_a_folder_or_not_utf8_is_one_line(tmp_path, capsys):
    assert main(["compound", "--space", str(tmp_path), "--dry-run"]) == 2
    assert "is a folder" in capsys.readouterr().err
    latin = tmp_path / "latin1.toml"
    latin.write_bytes("# caf\xe9\nphi = 1\n".encode("latin-1"))
    assert main(["compound", "--space", str(latin), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def no_full_grid(monkeypatch):
    """Fail if anything builds the full Cartesian product (a 400-per-axis grid has 64 million points)."""

    def refuse(self):
        raise AssertionError("the full grid was built")

    monkeypatch.setattr(CompoundSpace, "grid", refuse)


@pytest.mark.parametrize("seed", range(40))
def test_feasible_triples_without_the_full_grid_match_the_brute_force(seed, no_full_grid):
    import random

    rng = random.Random(seed)
    axes = [
        tuple(round(1 + rng.random() * 0.5, rng.choice([1, 2])) for _ in range(rng.randint(1, 8)))
        for _ in "abg"
    ]
    target, tolerance = (
        rng.choice([1.5, 2.0, 1.21]),
        rng.choice([0.0, 0.01, 0.1, 0.3]),
    )  # 1.21 = 1.1^2: exact edges
    space = CompoundSpace(*axes, target=target, tolerance=tolerance)
    ordered = [
        Triple(a, b, g)
        for a, b, g in itertools.product(space.alpha, space.beta, space.gamma)
        if abs(a * b * b * g * g - target) <= tolerance + 1e-9
    ]
    assert space.feasible() == ordered  # the same triples, in grid order
    assert space.count_feasible() == len(ordered)


def test_a_100_per_axis_dry_run_never_builds_the_grid(no_full_grid, capsys):
    values = ",".join(f"{1 + i / 100:g}" for i in range(100))
    assert main(["compound", "--alpha", values, "--beta", values, "--gamma", values, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("10280 feasible of 1000000:")


@pytest.mark.parametrize(
    "per_axis, message",
    [
        (400, "622,670 triples of the grid meet the constraint; .* at most 100,000"),
        (1001, r"The grid has 1,003,003,001 points \(1001 x 1001 x 1001\); at most 1,000,000,000"),
    ],
)
def test_too_big_a_grid_is_refused_with_its_size(no_full_grid, per_axis, message):
    values = tuple(1 + i / per_axis for i in range(per_axis))
    with pytest.raises(UserError, match=message):
        CompoundSpace(values, values, values).require_feasible()


def test_nearest_cost_is_named_without_the_full_grid(no_full_grid):
    with pytest.raises(UserError, match="nearest is a1 b1 g1.2 with 1.440"):
        CompoundSpace(alpha=(1.0,), beta=(1.0,), gamma=(1.0, 1.2)).require_feasible()
