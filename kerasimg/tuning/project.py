"""A search's folder under ``--directory``: its name checked, its lock, and what ``--overwrite`` may delete.

Shared by every search (``tune compound``, ``tune recipe``): KerasTuner keeps its state in
``<directory>/<project>/``, and the results are written beside it.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from kerasimg.errors import UserError
from kerasimg.files import inside
from kerasimg.locks import exclusive
from kerasimg.names import check_name

ORACLE_FILE = "oracle.json"  # KerasTuner's own state file: its presence marks a search project


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
