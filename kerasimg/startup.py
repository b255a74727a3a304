"""Import TensorFlow without its start-up chatter on a CPU machine, keeping every real warning and error.

TensorFlow's C++ side writes lines such as "oneDNN custom operations are on",
"Could not find cuda drivers", "failed call to cuInit" and the CPU-feature note
straight to the process's stderr before its logging is configured, so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence them. While TensorFlow is first imported,
stderr goes to a temporary file; afterwards every line that is not one of those
known notes is written back. A command run from the console (``kerasimg X`` or
``python -m kerasimg.X``) keeps filtering: its stderr then goes through a pipe that drops
the notes TensorFlow's C++ side prints while it runs (the oneDNN DT_UINT8 note, loop
optimizer skips, the LiteRT converter's notes). ``KERASIMG_TF_LOGS=1`` shows everything.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import tempfile

# Notes every CPU-only machine prints; nothing a user can or needs to act on.
_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers"
    r"|failed call to cuInit"
    r"|cpu_feature_guard\.cc"
    r"|rebuild TensorFlow with the appropriate compiler flags"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    # Printed while a command runs: notes about this CPU or the graph, nothing to act on.
    r"|oneDNN supports DT_\w+ only on platforms with AVX-512"
    r"|loop_optimizer\.cc.*Skipping loop optimization"
    r"|tf_tfl_flatbuffer_helpers\.cc"
    r"|flatbuffer_export\.cc.*Skipping runtime version metadata"
    r"|Created TensorFlow Lite XNNPACK delegate"
)


def is_noise(line: str) -> bool:
    return bool(_NOISE.search(line))


def import_tensorflow_quietly() -> None:
    """Import TensorFlow once, dropping only the known start-up notes from stderr."""
    if "tensorflow" in sys.modules or os.environ.get("KERASIMG_TF_LOGS"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # drop INFO logs; warnings and errors stay
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some embedded interpreters): import as is
        import tensorflow  # noqa: F401

        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow

            tensorflow.config.list_physical_devices()  # probes CUDA now, inside the filter
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                if not is_noise(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def running_as_cli() -> bool:
    """True in a ``kerasimg X`` or ``python -m kerasimg.X`` process (not in a program importing kerasimg)."""
    argv = list(getattr(sys, "orig_argv", []))  # the interpreter's own: [python, -m, kerasimg.fit, ...]
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1].split(".")[0] == "kerasimg"
    script = os.path.basename((getattr(sys, "argv", None) or [""])[0]).split(".")[0]
    return script in ("kerasimg", "kerasimg-script")


# The filter: a separate small process, so that what a crashing (or ``os._exit``-ing) command wrote
# last still reaches the terminal: it reads until every writer is gone, then ends.
_PUMP = (
    "import re, sys\n"
    "noise = re.compile(sys.argv[1])\n"
    "out = sys.stderr.buffer\n"
    "for line in sys.stdin.buffer:\n"
    "    if not noise.search(line.decode(errors='replace')):\n"
    "        out.write(line)\n"
    "        out.flush()\n"
)
_filter: list = []


def filter_native_logs() -> None:
    """From now on, drop the known notes from everything written to file descriptor 2.

    TensorFlow's C++ code writes to the descriptor, past Python's ``sys.stderr``; so the
    descriptor becomes a pipe into a small filter process that copies every other line to the
    real stderr. It runs in its own session (Ctrl-C reaches only the command) and outlives a
    crash, so a traceback or a fatal native message printed last is never lost; at a normal
    exit the command waits for it. Only in a CLI process, once; ``KERASIMG_TF_LOGS=1`` turns
    it off.
    """
    if _filter or os.environ.get("KERASIMG_TF_LOGS") or not running_as_cli():
        return
    import subprocess

    try:
        sys.stderr.flush()
        real = os.dup(2)
        read, write = os.pipe()
        pump = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _PUMP, _NOISE.pattern],
            stdin=read,
            stdout=subprocess.DEVNULL,
            stderr=real,
            start_new_session=True,
        )
    except (OSError, ValueError):
        return
    os.close(read)
    os.dup2(write, 2)
    os.close(write)
    _filter.append(pump)

    def restore() -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(real, 2)  # closes this process's write end of the pipe: the filter reads to its end
        os.close(real)
        try:
            pump.wait(timeout=5)  # a child process still holding the pipe keeps it open: bounded
        except subprocess.TimeoutExpired:
            pass

    atexit.register(restore)
