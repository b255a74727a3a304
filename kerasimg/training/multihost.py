"""``--strategy multihost``: one model trained by several processes (machines) with Keras's distribution API.

Keras 3's ``fit`` does not run under TensorFlow's ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), but its own ``keras.distribution`` API does on the JAX
backend, fed by the same ``tf.data`` pipelines: ``keras.distribution.initialize()``
joins the processes named by ``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID`` (so any
launcher works: ssh, Slurm, a cloud job), and ``DataParallel`` replicates the model on
every device of every process. Every process lists the same files in the same seeded
order and reads and decodes only its own share of every global batch
(``kerasimg.data.sharding``), so gradients, BatchNorm statistics and metrics are those
of the global batch. Without the variables it is one process over all its local devices.

What runs where: training, validation, the checkpoint saves and Keras's
``BackupAndRestore`` are collective (every process calls them; a save by process 0
alone fails in ``device_put``). Process 0 writes the run directory; the other
processes write the same files into a scratch folder they delete at the end. After
training each process loads process 0's best ``model.keras`` and predicts its own
share of the test split; every process receives all the predictions, and process 0's
evaluation is the one kept. The feature cache is not used (its extraction would need
every image on every process), and FLOPs are not counted (they are a TensorFlow-graph
count; ``config.json`` has ``null``). A
resumed run takes its settings and training state from process 0, so only process
0 needs the run directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from kerasimg.data.pipeline import split_length
from kerasimg.data.sharding import ProcessShard
from kerasimg.errors import UserError
from kerasimg.files import atomic_write, make_temp_dir
from kerasimg.training.run import Run

VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
INSTALL_HINT = "pip install kerasimg[jax]"
DEFAULT_CONNECT_TIMEOUT = 300  # seconds a process waits for the others to join (--connect-timeout)
# A process that dies stops the others once its heartbeats stop: JAX's default is 100 s.
HEARTBEAT_TIMEOUT = 30


@dataclass(frozen=True)
class Settings:
    """Keras's ``KERAS_DISTRIBUTION_*`` variables, checked: the coordinator (process 0) and this process."""

    host: str
    port: int
    num_processes: int
    process_id: int

    @property
    def coordinator(self) -> str:
        return f"{self.host}:{self.port}"


def read_settings(environ=None) -> Settings:
    """Check Keras's three variables before JAX sees them; a bad one is one line naming it and its value.

    ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` is ``host:port`` of process 0 (or every process's,
    comma-separated, process 0 first), ``..._NUM_PROCESSES`` a whole number from 1, and
    ``..._PROCESS_ID`` a whole number below it.
    """
    environ = os.environ if environ is None else environ
    addresses_name, count_name, id_name = VARIABLES
    missing = [name for name in VARIABLES if not environ.get(name, "").strip()]
    if missing:
        raise UserError(
            f"A multihost process needs all of {', '.join(VARIABLES)}; {', '.join(missing)} not set."
        )

    def whole(name: str, low: int, high: int | None, meaning: str) -> int:
        value = environ[name].strip()
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number >= high):
            raise UserError(f"{name} must be {meaning}. Received: {name}={value!r}")
        return number

    count = whole(count_name, 1, None, "a whole number of processes, at least 1")
    process = whole(id_name, 0, count, f"this process's number, 0 to {count - 1} ({count_name}={count})")
    addresses = [a.strip() for a in environ[addresses_name].split(",")]
    if len(addresses) > 1 and len(addresses) != count:
        raise UserError(
            f"{addresses_name} lists {len(addresses)} addresses but {count_name} is {count}; give process "
            f"0's host:port alone, or one per process. Received: {addresses_name}={environ[addresses_name]!r}"
        )
    host, _, port = addresses[0].rpartition(":")
    host = host.strip("[]")  # [::1]:1234
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UserError(
            f"{addresses_name} must start with process 0's host:port, the port a number from 1 to 65535. "
            f"Received: {addresses_name}={environ[addresses_name]!r}"
        )
    return Settings(host, int(port), count, process)


def check_port_free(settings: Settings) -> None:
    """Process 0 listens on the coordinator port: one line when something else already does."""
    if settings.process_id != 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the coordinator does
        try:
            probe.bind(("", settings.port))
        except OSError as error:
            raise UserError(
                f"Process 0 cannot listen on port {settings.port} ({error.strerror}): another program "
                f"(or an earlier run) uses it. Choose a free port in {VARIABLES[0]}. "
                f"Received: {VARIABLES[0]}={settings.coordinator!r}"
            ) from None


def join(settings: Settings, timeout: float = DEFAULT_CONNECT_TIMEOUT, log=print) -> None:
    """``keras.distribution.initialize()`` with a bound on the wait, saying whom it waits for.

    JAX's own connect timeout aborts the interpreter with a C++ stack trace, and an
    unresolvable host or a missing process 0 waits silently until then; so JAX joins
    in a thread, given more time than ``timeout``, and this process stops with one line
    when ``timeout`` passes first. A process that dies stops the others after
    ``HEARTBEAT_TIMEOUT`` seconds without its heartbeats.
    """
    import jax

    check_port_free(settings)
    others = settings.num_processes - 1
    if settings.process_id == 0:
        log(
            f"Process 0 of {settings.num_processes}: waiting up to {timeout:g} s on port {settings.port} for "
            f"the other {others} process(es) to join (--connect-timeout)."
        )
    else:
        log(
            f"Process {settings.process_id} of {settings.num_processes}: waiting up to {timeout:g} s for "
            f"process 0 at {settings.coordinator} (--connect-timeout)."
        )
    sys.stdout.flush()
    failed = []

    def connect():
        try:
            jax.distributed.initialize(
                coordinator_address=settings.coordinator,
                num_processes=settings.num_processes,
                process_id=settings.process_id,
                initialization_timeout=int(timeout) + 60,
                heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT,
            )
        except Exception as error:  # noqa: BLE001  (reported below, in this process's thread)
            failed.append(error)

    thread = threading.Thread(target=connect, name="kerasimg-join", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        waited = "the other processes" if settings.process_id == 0 else f"process 0 at {settings.coordinator}"
        print(
            f"error: process {settings.process_id} of {settings.num_processes} gave up after {timeout:g} s "
            f"waiting for {waited} (--connect-timeout): start every process, and check that the host "
            "resolves and the port is reachable from here.",
            file=sys.stderr,
        )
        sys.stderr.flush()
        os._exit(2)  # JAX's connect cannot be cancelled, and its exit hook would wait for it
    if failed:
        raise UserError(f"Process {settings.process_id} could not join the run: {failed[0]}")
    from keras.src.backend.jax.distribution_lib import initialize_rng

    initialize_rng()  # what keras.distribution.initialize() does after joining


def requested() -> bool:
    """Whether this process was started as one of several (the launcher set Keras's variables)."""
    return any(os.environ.get(name) for name in VARIABLES)


def restart_under_jax(module: str, argv: list[str], log=print) -> None:
    """Re-run ``python -m module argv`` with ``KERAS_BACKEND=jax``: Keras fixes its backend at import."""
    if importlib.util.find_spec("jax") is None:
        raise UserError(f"--strategy multihost trains with JAX, which is not installed: {INSTALL_HINT}.")
    if requested():
        read_settings()  # a bad variable is one line now, not a traceback after the restart
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
    # Validation pads its last global batch with weight-0 places: the metrics must weigh examples.
    weighs_examples = True

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

    def setup_notes(self, precision: str, batch_size: int) -> tuple[str, ...]:
        """The line saying how the run is spread: always, since it is spread over processes."""
        return (_setup_note(precision, self.replicas, batch_size, self.processes_note),)

    def from_process_zero(self, value):
        return from_process_zero(value)

    def copy_from_process_zero(self, folder, pattern: str = "*") -> None:
        copy_from_process_zero(folder, pattern)

    def shared_or_raise(self, compute):
        return shared_or_raise(compute)

    @contextlib.contextmanager
    def writing(self, run_path: Path):
        """The folder this process writes the run into: process 0's run directory, or the same
        files into a scratch folder of this process's, deleted at the end."""
        if self.writes:
            yield Path(run_path)
            return
        scratch = make_temp_dir(tempfile.gettempdir(), "kerasimg-process-")
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def input_shard(self, global_batch: int, log) -> ProcessShard:
        """This process's share of the files (``kerasimg.data.sharding``), said once."""
        shard = ProcessShard(self.num_processes, self.process_id)
        log(
            f"Each process reads and decodes its own {shard.local_batch(global_batch)} images of every "
            f"global batch of {global_batch}; an epoch's last global batch is filled with images read "
            "again (in validation with weight 0)."
        )
        return shard

    def fit_callbacks(self, val, global_batch: int) -> list:
        """Keras's validation loss divides by whole batches: rescaled to the mean over the real images."""
        val_length = split_length(val)
        padded = ProcessShard.padded_length(val_length, global_batch)
        return [PaddedValidationLoss(padded / val_length)] if val_length and padded != val_length else []

    def predict(self, model: keras.Model, dataset, length: int, global_batch: int) -> np.ndarray:
        """``model``'s outputs on the ``length`` images ``dataset(shard)`` gives in global batches of
        ``global_batch``, each process predicting its own share and every process receiving all of
        them, in order."""
        from jax.experimental import multihost_utils

        shard = ProcessShard(self.num_processes, self.process_id)
        local = np.asarray(model.predict(dataset(shard), verbose=0), np.float64)
        gathered = np.asarray(multihost_utils.process_allgather(local))
        return shard.unshard(gathered, length, global_batch)

    @contextlib.contextmanager
    def evaluating(self, run: Run, trained: keras.Model):
        """Each process evaluates by itself, on the whole test split, process 0's best model.

        A resumed run's best model may predate this process: every process takes process 0's.
        The trained model lives in the distribution, so the saved one is loaded in any case.
        """
        from kerasimg.models import load_classifier

        copy_from_process_zero(run.path, run.model_path.name)
        with local():
            yield load_classifier(run.model_path)


@dataclass(frozen=True)
class SingleProcess:
    """A run in this process alone (under a TensorFlow strategy): ``Cluster``'s operations, doing nothing."""

    strategy: object
    process_id = 0
    num_processes = 1
    writes = True
    extracts_caches = True
    folds_batchnorm = True
    weighs_examples = False
    processes_note = ""

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def scope(self):
        return self.strategy.scope()

    def check_same_seed(self, seed: int) -> None:
        pass

    def setup_notes(self, precision: str, batch_size: int) -> tuple[str, ...]:
        """The line saying how the run is spread, when it is not the plain float32 single-device one."""
        if precision != "float32" or self.replicas > 1:
            return (_setup_note(precision, self.replicas, batch_size, self.processes_note),)
        return ()

    def from_process_zero(self, value):
        return value

    def copy_from_process_zero(self, folder, pattern: str = "*") -> None:
        pass

    def shared_or_raise(self, compute):
        return compute()

    def writing(self, run_path: Path):
        return contextlib.nullcontext(Path(run_path))

    def input_shard(self, global_batch: int, log) -> None:
        return None

    def fit_callbacks(self, val, global_batch: int) -> list:
        return []

    def predict(self, model: keras.Model, dataset, length: int, global_batch: int) -> np.ndarray:
        return np.asarray(model.predict(dataset(None), verbose=0), np.float64)

    def evaluating(self, run: Run, trained: keras.Model):
        """The best model the run saved, or ``trained`` when it saved none."""
        from kerasimg.models import load_classifier

        return contextlib.nullcontext(load_classifier(run.model_path) if run.has_model else trained)


def _setup_note(precision: str, replicas: int, batch_size: int, processes_note: str) -> str:
    return (
        f"Precision {precision}; {replicas} replica(s){processes_note}, global batch "
        f"{batch_size * replicas} ({batch_size} per replica)."
    )


def processes(
    strategy: str, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, log=print
) -> Cluster | SingleProcess:
    """The processes a ``--strategy`` run trains in: every process of a multihost run (joined within
    ``connect_timeout`` seconds), or this one."""
    from kerasimg.training.distribution import MULTIHOST, resolve_strategy

    if strategy == MULTIHOST:
        return start(connect_timeout, log)
    return SingleProcess(resolve_strategy(strategy))


_cluster: Cluster | None = None


def start(connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, log=print) -> Cluster:
    """Join the processes (once per process) and return the cluster; JAX backend only.

    Keras's variables are checked first (``read_settings``); joining waits at most
    ``connect_timeout`` seconds for the other processes (``join``).
    """
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
        join(read_settings(), connect_timeout, log)
    # Each process reads its own share of the files (input_shard): Keras's auto-sharding would have
    # every process read every file, and cannot find the batch size of a pipeline that augments
    # after batching.
    distribution = keras.distribution.DataParallel(auto_shard_dataset=False)
    _cluster = Cluster(jax.process_index(), jax.process_count(), distribution)
    return _cluster


class PaddedValidationLoss(keras.callbacks.Callback):
    """``val_loss`` as the mean over the validation images, not over their padded places.

    Keras divides a batch's weighted loss by the batch's size, so the weight-0 places that fill
    the last global batch count as zero losses; multiplying by ``padded / real`` undoes it
    exactly (accuracy weighs by the weights and needs nothing). It mutates the epoch's logs,
    so it goes before the callbacks that record them.
    """

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def on_epoch_end(self, epoch, logs=None):
        if logs and "val_loss" in logs:
            logs["val_loss"] = float(logs["val_loss"]) * self.factor


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
