"""What a data source resolves to: class names and three splits.

Its own module so that each source (folders in ``sources.py``, ``tfds_source.py``)
builds one without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

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
        }
