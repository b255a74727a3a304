"""What a data source resolves to: class names and three splits.

Its own module so that each source (folders in ``sources.py``, ``tfds_source.py``)
builds one without importing the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kerasimg.data.splits import FileSplit
from kerasimg.data.verify import SkipRecorder, verify_images


@dataclass
class LabelledData:
    """Everything training needs to know about a data source."""

    name: str
    class_names: list[str]
    train: object
    val: object
    test: object
    unlabelled: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source: str = ""
    # Set when files are checked as the pipeline reads them: records into ``skipped``.
    recorder: SkipRecorder | None = None
    excluded: int = 0  # training files left out because an audit flagged them (fit --exclude)
    root: str = ""  # the folder the files were listed from (a pack names files relative to it)
    # The splits carved out of another ("test" from train, "val" from train): which settings shaped them.
    carved: list[str] = field(default_factory=list)
    # Any number of classes per image (``--task multilabel``): the splits carry multi-hot ``targets``.
    multilabel: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def write_skips_to(self, path: str | os.PathLike) -> None:
        """Append each file the pipeline skips from now on to ``path`` (the run's ``skipped_files.txt``)."""
        if self.recorder is not None:
            self.recorder.write_to(path)

    def callbacks(self, log=print) -> list:
        """Keras callbacks that say at each epoch's end how many files the pipeline skipped."""
        return [self.recorder.callback(log)] if self.recorder is not None else []

    def check_split(self, name: str, log=print) -> int:
        """Check every file of split ``name`` now, drop and record the bad ones; returns how many.

        Evaluation calls this first, so with ``verify="pipeline"`` no test image is lost
        unannounced: each is either evaluated or listed as skipped. A no-op for a split
        that was checked before training, or is not a folder's (a packed split returns how many
        of its files were left out when it was packed).
        """
        split = getattr(self, name)
        if not isinstance(split, FileSplit):  # a packed split's files were checked when it was packed
            return getattr(split, "skipped", 0)
        if self.recorder is None or split.skips is None:
            return 0
        bad = verify_images(split.paths, max_pixels=self.recorder.max_pixels, log=log)
        for path, reason in bad.items():
            self.recorder.record(path, reason)
        checked = split.without(bad)
        for other in ("train", "val", "test"):  # validation may be the test split (--val-from test)
            if getattr(self, other) is split:
                setattr(self, other, checked)
        return len(bad)

    def summary(self) -> dict:
        def size(split):
            return len(split) if hasattr(split, "__len__") else None

        return {
            "source": self.source,
            "classes": self.class_names,
            "train": size(self.train),
            "val": size(self.val),
            "test": size(self.test),
            "unlabelled": len(self.unlabelled),
            "skipped": len(self.skipped),
            "excluded": self.excluded,
            "task": "multilabel" if self.multilabel else "single",
        }
