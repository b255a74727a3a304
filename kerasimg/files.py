"""Small file helpers: where kerasimg keeps its cache, and writes that never leave half a file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerasimg.errors import UserError


def kerasimg_home() -> Path:
    """The cache folder for generated data and verdicts: ``$KERASIMG_HOME`` or ``~/.cache/kerasimg``."""
    return Path(os.environ.get("KERASIMG_HOME", Path.home() / ".cache" / "kerasimg")).expanduser()


def umask() -> int:
    """The process's umask (read by setting it back at once; there is no other way to ask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_user_permissions(path: str | os.PathLike) -> None:
    """Give a file or folder made by ``mkstemp``/``mkdtemp`` (0600/0700) the mode the umask gives.

    A TF Serving process running as another user must be able to read what kerasimg writes.
    """
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~umask())


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A fresh folder under ``parent`` (to be renamed into place), with the umask's permissions."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    give_user_permissions(folder)
    return folder


def atomic_folder(target: str | os.PathLike, fill: Callable[[Path], Any]) -> Path:
    """Call ``fill(tmp_folder)``, then rename the folder onto ``target`` (which must not exist).

    An interrupted build leaves no half-written folder; if another process renamed its own copy
    into place first, that one is kept and this one removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target.parent, f".{target.name}.")
    try:
        fill(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # Another process finished first: keep theirs.
            if not target.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def inside(root: str | os.PathLike, *parts: str) -> Path:
    """``root/parts...`` resolved, refused unless it lies strictly inside ``root`` resolved.

    Every path that kerasimg deletes or overwrites by a user-given name goes through
    this, so ``..``, absolute paths and symlinks cannot point it elsewhere.
    """
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target == base or base not in target.parents:
        raise UserError(f"Refusing to touch {target}: it is not inside {base}. Received: {'/'.join(parts)!r}")
    return target


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)``, then rename the result onto ``path``.

    A crash or Ctrl-C mid-write leaves the previous file intact instead of a truncated one.
    The file gets the permissions the umask gives an ordinary file (``mkstemp`` makes 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        give_user_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
