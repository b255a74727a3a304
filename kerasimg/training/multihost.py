"""``--strategy multihost``: one model trained by several processes (machines) with Keras's distribution API.

Keras 3's ``fit`` does not run under TensorFlow's ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), but its own ``keras.distribution`` API does on the JAX
backend, fed by the same ``tf.data`` pipelines: ``keras.distribution.initialize()``
joins the processes named by ``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID`` (so any
launcher works: ssh, Slurm, a cloud job), and ``DataParallel`` replicates the model on
every device of every process. Each process builds the same global batches (same
seed) and ``DataParallel`` keeps its share of each, so gradients, BatchNorm
statistics and metrics are those of the global batch. Without the variables it is one
process over all its local devices.

What runs where: training, validation, the checkpoint saves and Keras's
``BackupAndRestore`` are collective (every process calls them; a save by process 0
alone fails in ``device_put``). Process 0 writes the run directory; the other
processes write the same files into a scratch folder they delete at the end. After
training each process evaluates the best ``model.keras`` on the whole test split by
itself (not sharded; process 0's results are the ones kept). The feature cache is
not used (its ``predict`` would return only a process's shard), and FLOPs are not
counted (they are a TensorFlow-graph count; ``config.json`` has ``null``). A
resumed run takes its settings and training state from process 0, so only process
0 needs the run directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from kerasimg.errors import UserError
from kerasimg.files import atomic_write

VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
INSTALL_HINT = "pip install kerasimg[jax]"


def requested() -> bool:
    """Whether this process was started as one of several (the launcher set Keras's variables)."""
    return any(os.environ.get(name) for name in VARIABLES)


def restart_under_jax(module: str, argv: list[str], log=print) -> None:
    """Re-run ``python -m module argv`` with ``KERAS_BACKEND=jax``: Keras fixes its backend at import."""
    if importlib.util.find_spec("jax") is None:
        raise UserError(f"--strategy multihost trains with JAX, which is not installed: {INSTALL_HINT}.")
    log("--strategy multihost trains under Keras's JAX backend: restarting with KERAS_BACKEND=jax.")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], {**os.environ, "KERAS_BACKEND": "jax"})


@dataclass(frozen=True)
class Cluster:
    """The processes of one run and the ``DataParallel`` distribution over all their devices.

    The driver asks it every question whose answer differs across processes; a run in
    one process asks ``SingleProcess``, whose collectives do nothing, so the driver's
    loop has no multihost branches.
    """

    process_id: int
    num_processes: int
    distribution: keras.distribution.DataParallel
    # A multihost predict() returns one process's shard: no feature cache can be extracted.
    extracts_caches = False
    # The fold's compute model is checked on TensorFlow only.
    folds_batchnorm = False
    # The trained model lives in the distribution: evaluation loads process 0's best model.
    evaluates_saved_model = True

    @property
    def replicas(self) -> int:
        return self.distribution.num_model_replicas

    @property
    def writes(self) -> bool:
        """Process 0 writes the run directory; the others only take part."""
        return self.process_id == 0

    @property
    def processes_note(self) -> str:
        return f" in {self.num_processes} process(es)"

    def scope(self):
        return self.distribution.scope()

    def check_same_seed(self, seed: int) -> None:
        check_same_seed(seed)

    def share(self, datasets: tuple, global_batch: int, log) -> tuple:
        """This process's part of every global batch of each dataset (see ``process_share``)."""
        log(
            f"Each process trains on {global_batch // self.num_processes} images of every "
            f"global batch of {global_batch}; a last, partial batch is left out of every epoch."
        )
        return tuple(process_share(ds, global_batch) for ds in datasets)

    @contextlib.contextmanager
    def evaluating(self, run_path: Path, model_name: str):
        """Each process evaluates by itself, on the whole test split, process 0's best model.

        A resumed run's best model may predate this process: every process takes process 0's.
        """
        copy_from_process_zero(run_path, model_name)
        with local():
            yield


@dataclass(frozen=True)
class SingleProcess:
    """A run in this process alone (under a TensorFlow strategy): ``Cluster``'s operations, doing nothing."""

    strategy: object
    process_id = 0
    num_processes = 1
    writes = True
    extracts_caches = True
    folds_batchnorm = True
    evaluates_saved_model = False
    processes_note = ""

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def scope(self):
        return self.strategy.scope()

    def check_same_seed(self, seed: int) -> None:
        pass

    def share(self, datasets: tuple, global_batch: int, log) -> tuple:
        return datasets

    def evaluating(self, run_path: Path, model_name: str):
        return contextlib.nullcontext()


def processes(strategy: str) -> Cluster | SingleProcess:
    """The processes a ``--strategy`` run trains in: every process of a multihost run, or this one."""
    from kerasimg.training.distribution import MULTIHOST, resolve_strategy

    return start() if strategy == MULTIHOST else SingleProcess(resolve_strategy(strategy))


_cluster: Cluster | None = None


def start() -> Cluster:
    """Join the processes (once per process) and return the cluster; JAX backend only."""
    global _cluster
    if _cluster is not None:
        return _cluster
    if keras.backend.backend() != "jax":
        raise UserError(
            "--strategy multihost needs Keras's JAX backend, chosen before Keras is imported: set "
            f"KERAS_BACKEND=jax (the CLIs do it for you). Received: backend={keras.backend.backend()!r}"
        )
    import jax

    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        # CPU processes need a collectives library to talk; gloo ships with jaxlib.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if requested() and not jax.distributed.is_initialized():
        keras.distribution.initialize()
    # The driver shards the pipelines itself (process_share): Keras's auto-sharding cannot find
    # the batch size of a pipeline that augments after batching.
    distribution = keras.distribution.DataParallel(auto_shard_dataset=False)
    _cluster = Cluster(jax.process_index(), jax.process_count(), distribution)
    return _cluster


def process_share(dataset, global_batch: int):
    """This process's part of every global batch of ``dataset`` (built alike on every process).

    A last, partial global batch is dropped: split unevenly, it would give the processes
    different numbers of steps, and the collective steps would wait forever.
    """
    dataset = dataset.rebatch(global_batch, drop_remainder=True)
    if _cluster is None or _cluster.num_processes == 1:
        return dataset
    per_process = global_batch // _cluster.num_processes
    return dataset.rebatch(per_process).shard(_cluster.num_processes, _cluster.process_id)


def check_same_seed(seed: int) -> None:
    """Fail on every process at once when they were given different seeds.

    Every process must build the same global batches and the same initial weights; with
    different seeds JAX would abort later in ``device_put`` with a message about arrays.
    """
    from jax.experimental import multihost_utils

    seeds = [int(s) for s in multihost_utils.process_allgather(np.int64(seed))]
    if len(set(seeds)) > 1:
        raise UserError(
            f"Every process of a multihost run needs the same --seed; the processes have {seeds} "
            "(in process order). Start them with one --seed."
        )


def from_process_zero(value):
    """Process 0's ``value`` (anything JSON can hold) on every process, e.g. what it read from the run."""
    if _cluster is None or _cluster.num_processes == 1:
        return value
    return json.loads(_bytes_from_process_zero(json.dumps(value).encode() if _cluster.writes else b""))


def _bytes_from_process_zero(data: bytes) -> bytes:
    from jax.experimental import multihost_utils

    size = int(multihost_utils.broadcast_one_to_all(np.int64(len(data))))
    padded = np.zeros(size, np.uint8)
    if _cluster.writes:
        padded[:] = np.frombuffer(data, np.uint8)
    return np.asarray(multihost_utils.broadcast_one_to_all(padded), dtype=np.uint8).tobytes()


def copy_from_process_zero(folder, pattern: str = "*") -> None:
    """Give every process process 0's files of ``folder`` that match ``pattern`` (a backup, the best model).

    Restoring assigns every variable, and an assignment is collective (JAX checks that
    every process puts the same value), so every process must restore the same state;
    only process 0 keeps the run, so it sends its backup before a resumed phase.
    """
    if _cluster is None or _cluster.num_processes == 1:
        return
    folder = Path(folder)
    names = from_process_zero(
        sorted(p.name for p in folder.glob(pattern) if p.is_file()) if _cluster.writes else []
    )
    for name in names:
        data = _bytes_from_process_zero((folder / name).read_bytes() if _cluster.writes else b"")
        if not _cluster.writes:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / name, lambda tmp, data=data: Path(tmp).write_bytes(data))


def shared_or_raise(compute):
    """``compute()`` on process 0, its result on every process; its ``UserError`` raised on every process."""
    result = {}
    if _cluster is None or _cluster.writes:
        try:
            result = {"value": compute()}
        except UserError as error:
            result = {"error": str(error)}
    result = from_process_zero(result)
    if "error" in result:
        raise UserError(result["error"])
    return result["value"]


@contextlib.contextmanager
def local():
    """No distribution inside: a model loaded here lives on this process's devices alone."""
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def writes_run() -> bool:
    """Whether this process writes files: any process but 1, 2... of a multihost run."""
    return _cluster is None or _cluster.writes
