"""``--workers N``: KerasTuner's chief and N workers as processes on this machine.

The chief starts first (it alone may clear the directory with ``--overwrite``) and
serves the oracle on a free 127.0.0.1 port; workers start once that port answers,
run the same command without ``--overwrite``, and each trains the trials it is
given. Output of each process goes to ``<directory>/<project>.logs/<id>.log``. If any
process fails the others are stopped; rerunning the command resumes the search.

The children stay in this process's group and are ended by their PIDs on every way
out of ``run_local``: a return, an error, Ctrl-C and SIGTERM (turned into an
exception so the cleanup runs). Should this process be killed outright, Linux's
parent-death signal ends each child too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kerasimg.errors import UserError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def worker_count(requested: int, remaining: int, cpus: int | None = None, log=print) -> int:
    """``requested`` capped at the trials left; a warning when more than the CPUs."""
    if requested < 1:
        raise UserError(f"--workers must be at least 1. Received: workers={requested}")
    cpus = cpus or os.cpu_count() or 1
    count = min(requested, remaining)
    if count < requested:
        log(f"--workers {requested} capped at {count}: {remaining} trial(s) left to train.")
    if count > cpus:
        log(
            f"Warning: {count} workers on {cpus} CPU(s); they share the cores, so each trial trains "
            "slower and memory grows with every worker. Consider --workers "
            f"{cpus}."
        )
    return count


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the cleanup in run_local still applies
        pass


class _Terminated(Exception):
    """SIGTERM, raised so that ``run_local``'s cleanup ends the children before it exits."""


def strip_flag(argv: list[str], flag: str, takes_value: bool) -> list[str]:
    """``argv`` without ``flag`` (as ``--flag V``, ``--flag=V`` or a bare switch)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = takes_value
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_local(
    argv: list[str],
    workers: int,
    log_dir: str | Path,
    *,
    module: str = "kerasimg.tune",
    start_timeout: float = 300.0,
    log=print,
) -> int:
    """Run ``python -m module *argv`` as a chief plus ``workers`` workers; return 0 when all succeed."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1. Received: workers={workers}")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port))
    procs: dict[str, subprocess.Popen] = {}

    def start(tuner_id: str, args: list[str]) -> None:
        with open(log_dir / f"{tuner_id}.log", "wb") as out:
            procs[tuner_id] = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=dict(base_env, KERASTUNER_TUNER_ID=tuner_id),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # same process group as this one (no new session)
            )

    def stop_all() -> None:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def on_sigterm(signum, frame):
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: signals stay as they are
        previous = None
    try:
        start("chief", argv)
        deadline = time.monotonic() + start_timeout
        while not _port_open(port):
            if procs["chief"].poll() is not None:
                raise UserError(
                    f"The chief exited (code {procs['chief'].returncode}) before serving the oracle; "
                    f"its log {log_dir / 'chief.log'} ends:\n{_tail(log_dir / 'chief.log')}"
                )
            if time.monotonic() > deadline:
                raise UserError(f"The chief did not open 127.0.0.1:{port} within {start_timeout:.0f} s.")
            time.sleep(0.5)
        log(f"Chief serving the oracle on 127.0.0.1:{port}; starting {workers} worker(s). Logs: {log_dir}/")
        worker_argv = strip_flag(argv, "--overwrite", takes_value=False)
        for i in range(workers):
            start(f"worker{i}", worker_argv)
        while True:
            failed = [(n, p.returncode) for n, p in procs.items() if p.poll() not in (None, 0)]
            if failed:
                name, code = failed[0]
                raise UserError(
                    f"{name} failed (exit {code}); stopped the others. Rerun the same command to resume. "
                    f"{log_dir / (name + '.log')} ends:\n{_tail(log_dir / (name + '.log'))}"
                )
            if all(p.poll() == 0 for p in procs.values()):
                return 0
            time.sleep(0.5)
    except _Terminated:
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        if previous is None:
            stop_all()
        else:  # SIGTERM again while stopping the children must not cut the cleanup short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                stop_all()
            finally:
                signal.signal(signal.SIGTERM, previous)
