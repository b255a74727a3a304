"""One process's share of a split in a multihost run: its own files, in whole global batches.

Every process lists the same files and, with the same seed, shuffles them into the
same order, padded to whole global batches. Global batch ``k`` is elements
``k * batch .. (k + 1) * batch`` of that order, whatever the number of processes, and
process ``index`` of ``count`` reads and decodes only its own contiguous part of each
(``batch // count`` elements), which is what its devices hold in the global batch.
So every process has the same number of steps (a collective step would wait forever on
a process that ran out), and the run is, up to rounding, the run of one process with as
many devices.

The padding is elements of the split read again (for training, from the next seeded
shuffle, the same on every process). Training counts them (a few images twice an epoch,
as PyTorch's ``DistributedSampler`` does), so no image is left out; evaluation gives
them weight 0, so they change no metric, and ``unshard`` puts the processes'
predictions back in the split's order without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class ProcessShard:
    """Process ``index`` of ``count`` (``count`` may be 1: one process over several devices)."""

    count: int
    index: int

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise ValueError(f"Process index {self.index} is not one of {self.count} processes.")

    def local_batch(self, global_batch: int) -> int:
        if global_batch % self.count:
            raise ValueError(f"A global batch of {global_batch} cannot be shared by {self.count} processes.")
        return global_batch // self.count

    @staticmethod
    def padded_length(length: int, global_batch: int) -> int:
        """``length`` rounded up to whole global batches."""
        return -(-length // global_batch) * global_batch

    def take(self, elements: tf.data.Dataset, length: int, global_batch: int, *, weighted: bool):
        """This process's elements of ``elements`` (``length`` of them, in every process's order),
        padded to whole global batches; ``weighted`` appends a weight, 0 on the padding."""
        padded = self.padded_length(length, global_batch)
        if weighted:
            elements = elements.map(lambda *e: (*e, tf.constant(1.0)))
        padding = elements.repeat().take(padded - length)
        if weighted:
            padding = padding.map(lambda *e: (*e[:-1], tf.constant(0.0)))
        # Before decoding: each process reads only its own files' bytes.
        mine = elements.concatenate(padding).batch(self.local_batch(global_batch))
        mine = mine.shard(self.count, self.index).unbatch()
        return mine.apply(tf.data.experimental.assert_cardinality(padded // self.count))

    def unshard(self, gathered: np.ndarray, length: int, global_batch: int) -> np.ndarray:
        """Every process's rows (``[count, rows per process, ...]``, in process order) back in the
        split's order, padding dropped."""
        gathered = np.asarray(gathered)
        if gathered.shape[0] != self.count:
            raise ValueError(f"Expected the rows of {self.count} processes, got {gathered.shape[0]}.")
        local = self.local_batch(global_batch)
        parts = gathered.reshape(self.count, -1, local, *gathered.shape[2:])  # [process, step, row]
        return parts.swapaxes(0, 1).reshape(-1, *gathered.shape[2:])[:length]
