"""A search's folder under ``--directory``: its name checked, its lock, and what ``--overwrite`` may delete.

Shared by every search (``tune compound``, ``tune recipe``): KerasTuner keeps its state in
``<directory>/<project>/``, and the results are written beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kerasimg.errors import UserError
from kerasimg.files import inside
from kerasimg.locks import exclusive
from kerasimg.names import check_name

ORACLE_FILE = "oracle.json"  # KerasTuner's own state file: its presence marks a search project


def distributed_role() -> str:
    """ "single", "chief" or "worker", from KerasTuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [v for v in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if v not in os.environ]
    if missing:
        raise UserError(f"KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} is not; set all three.")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


@dataclass
class SearchProject:
    directory: str = "tuning"
    project: str = "search"
    overwrite: bool = False

    @property
    def project_dir(self) -> Path:
        """KerasTuner's folder for this search, where the results are written too.

        The project is one plain folder name (the zoo's rule), resolved strictly inside
        ``directory``: no ``..``, absolute path, ``.`` or empty name can point elsewhere.
        """
        directory = Path(self.directory)
        if directory.exists() and not directory.is_dir():
            raise UserError(
                f"--directory must be a folder (KerasTuner keeps its projects in it); {directory} is a "
                f"file. Give another --directory. Received: directory={self.directory!r}"
            )
        return inside(directory, check_name(self.project, "project name"))

    @property
    def lock_path(self) -> Path:
        """Beside the project, not in it: ``--overwrite`` deletes the project while holding the lock."""
        project_dir = self.project_dir
        return project_dir.parent / f".{project_dir.name}.lock"

    def lock(self) -> contextlib.AbstractContextManager:
        """Hold the project for this process; a second runner is refused with this one's PID."""
        return exclusive(self.lock_path, f"The search project {self.project_dir}")

    def lock_unless_distributed(self) -> contextlib.AbstractContextManager:
        """The lock for a single process; none for KerasTuner's chief and workers, whose launching
        process (``--workers``) holds it for them."""
        return self.lock() if distributed_role() == "single" else contextlib.nullcontext()

    def completed_trials(self) -> list[dict]:
        """The ``trial.json`` of every completed trial in the project (none when ``--overwrite``
        will clear it); unreadable records count as not completed."""
        trials = []
        for path in [] if self.overwrite else self.project_dir.glob("trial_*/trial.json"):
            try:
                trial = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if trial.get("status") == "COMPLETED":
                trials.append(trial)
        return trials

    def clear(self) -> None:
        """``--overwrite``: delete the project, only if KerasTuner's own state marks it as one."""
        project_dir = self.project_dir
        if not project_dir.exists():
            return
        if not (project_dir / ORACLE_FILE).is_file():
            raise UserError(
                f"--overwrite deletes only a search project (a folder holding KerasTuner's "
                f"{ORACLE_FILE}); {project_dir} has none, so it was left alone. Give another "
                f"--project or remove the folder yourself. Received: project={self.project!r}"
            )
        shutil.rmtree(project_dir)
