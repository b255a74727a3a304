"""``tfds:NAME[/CONFIG]``: any TFDS image-classification dataset as labelled splits."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from kerasimg.data.labelled import LabelledData
from kerasimg.errors import UserError


@dataclass
class TFDSSplit:
    """A TFDS split, optionally narrowed to a seeded pseudo-random fraction of its examples.

    Carving by a stateless hash of each example's index needs no split sizes (which
    an unprepared or mocked dataset does not have) and gives the same carve every
    time; unlike file sources it is not stratified.
    """

    dataset: str
    split: str
    keep: tuple[float, float] = (0.0, 1.0)
    seed: int = 0

    def images(self) -> tf.data.Dataset:
        import tensorflow_datasets as tfds

        ds = tfds.load(self.dataset, split=self.split, as_supervised=True)
        if self.keep == (0.0, 1.0):
            return ds
        low, high = self.keep
        seed = self.seed

        def selected(index, example):
            draw = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(seed, tf.int64), index]))
            return tf.logical_and(draw >= low, draw < high)

        return ds.enumerate().filter(selected).map(lambda index, example: example)


def load_tfds(name: str, *, val_split: float, val_from: str, test_split: float, seed: int):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
    except Exception as error:  # DatasetNotFoundError and config errors
        raise UserError(
            f"TFDS does not know this dataset ({str(error).splitlines()[0][:160]}). "
            f"See `tfds.list_builders()`. Received: data='tfds:{name}'"
        ) from None
    features = builder.info.features
    if "label" not in features or not hasattr(features["label"], "names"):
        raise UserError(f"TFDS dataset {name!r} has no class 'label' feature to classify by.")
    try:
        builder.download_and_prepare()
    except Exception as error:
        raise UserError(
            f"Could not download and prepare TFDS dataset {name!r} into {builder.data_dir} "
            f"({str(error).strip().splitlines()[-1][:160] if str(error).strip() else type(error).__name__}); "
            f"run `tfds build {name}` on a connected machine and copy its data folder here "
            f"(TFDS_DATA_DIR), or pass a local image folder with --data PATH."
        ) from None
    splits = set(builder.info.splits.keys())
    notes = []
    if "test" in splits:
        train_pool, test = TFDSSplit(name, "train", seed=seed), TFDSSplit(name, "test", seed=seed)
    else:
        train_pool = TFDSSplit(name, "train", (test_split, 1.0), seed)
        test = TFDSSplit(name, "train", (0.0, test_split), seed)
        notes.append(f"tfds:{name} has no test split: holding out {test_split:.0%} of train as test.")
    if "validation" in splits:
        train, val = train_pool, TFDSSplit(name, "validation", seed=seed)
    elif val_from == "test":
        train, val = train_pool, test
        notes.append("Validating on the test split (--val-from test), as the ported work did.")
    else:
        # Carve validation out of what is left of train with a second, independent draw.
        low, high = train_pool.keep
        cut = low + (high - low) * val_split
        train = TFDSSplit(name, "train", (cut, high), seed)
        val = TFDSSplit(name, "train", (low, cut), seed)
    return LabelledData(
        name=name.replace("/", "-"),
        class_names=list(features["label"].names),
        train=train,
        val=val,
        test=test,
        notes=notes,
        source=f"tfds:{name}",
    )
