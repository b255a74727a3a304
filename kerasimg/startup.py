"""Import TensorFlow without its start-up chatter on a CPU machine, keeping every real warning and error.

TensorFlow's C++ side writes lines such as "oneDNN custom operations are on",
"Could not find cuda drivers", "failed call to cuInit" and the CPU-feature note
straight to the process's stderr before its logging is configured, so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence them. While TensorFlow is first imported,
stderr goes to a temporary file; afterwards every line that is not one of those
known notes is written back. ``KERASIMG_TF_LOGS=1`` shows everything.
"""

from __future__ import annotations

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
