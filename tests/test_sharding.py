"""Each process of a multihost run reads its own files: whole global batches, nothing lost or counted twice.

Every file is a flat PNG whose grey level is 20 x its index, so a batch's images say
which files it holds. The processes are simulated in one process: ``ProcessShard(2, i)``
is what process ``i`` of two builds.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasimg.data import FileSplit, image_dataset
from kerasimg.data.sharding import ProcessShard
from kerasimg.data.verify import SkipRecorder

FILES, GLOBAL_BATCH, SIZE = 11, 4, 8


@pytest.fixture(scope="module")
def numbered(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("numbered")
    paths = []
    for i in range(FILES):
        paths.append(str(folder / f"{i:02d}.png"))
        pixels = np.full((SIZE, SIZE, 3), 20 * i, np.uint8)
        tf.io.write_file(paths[-1], tf.io.encode_png(pixels))
    return paths


def ids(batch) -> list[int]:
    return [int(round(v / 20)) for v in np.asarray(batch).mean(axis=(1, 2, 3))]


def epoch(split, shard, training=True, **kwargs) -> list[tuple]:
    ds = image_dataset(
        split, SIZE, GLOBAL_BATCH, training=training, augment="none", seed=3, shard=shard, **kwargs
    )
    return [tuple(np.asarray(t) for t in batch) for batch in ds]


def test_each_process_decodes_its_own_files_and_together_they_make_the_global_batches(numbered):
    split = FileSplit(numbered, [i % 3 for i in range(FILES)])
    alone = [ids(x) for x, _ in epoch(split, None)]
    shared = [[ids(x) for x, _ in epoch(split, ProcessShard(2, p))] for p in range(2)]
    # Every process takes the same number of steps, of half a global batch each.
    assert [len(s) for s in shared] == [3, 3]
    assert all(len(b) == GLOBAL_BATCH // 2 for s in shared for b in s)
    # Global batch k holds the files of the one-process run's batch k; the last, partial one is
    # filled with a file of the split.
    together = [sorted(a + b) for a, b in zip(*shared)]
    assert together[:2] == [sorted(b) for b in alone[:2]]
    assert len(alone[2]) == 3 and set(alone[2]) < set(together[2])
    # Each process holds a contiguous half: what one process over two devices would put on each.
    one = [ids(x) for x, _ in epoch(split, ProcessShard(1, 0))]
    assert [a + b for a, b in zip(*shared)] == one
    # The processes' files do not overlap, save the one place that pads the epoch.
    first, second = (set(sum(s, [])) for s in shared)
    assert first | second == set(range(FILES)) and len(first & second) <= 1
    # Labels travel with their images.
    for x, y in epoch(split, ProcessShard(2, 1)):
        assert [i % 3 for i in ids(x)] == list(y)


def test_evaluation_weights_the_padding_0_and_unshard_restores_the_split_order(numbered):
    split = FileSplit(numbered, [i % 3 for i in range(FILES)])
    rows, weights = [], []
    for p in range(2):
        batches = epoch(split, ProcessShard(2, p), training=False)
        rows.append(sum((ids(x) for x, _, _ in batches), []))
        weights.append(np.concatenate([w for _, _, w in batches]))
    assert len(rows[0]) == len(rows[1]) == 6  # 11 files padded to 12 places
    assert sum(w.sum() for w in weights) == FILES
    order = ProcessShard(2, 0).unshard(np.asarray(rows), FILES, GLOBAL_BATCH)
    assert order.tolist() == list(range(FILES))


def test_a_bad_file_keeps_batches_whole_in_training_and_weighs_nothing_in_evaluation(numbered, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    paths = [*numbered[:5], str(bad), *numbered[5:]]
    skipped = {}
    split = FileSplit(paths, [0] * len(paths), skips=SkipRecorder(skipped))
    training = [epoch(split, ProcessShard(2, p)) for p in range(2)]
    assert all(len(x) == GLOBAL_BATCH // 2 for batches in training for x, _ in batches)
    seen = {i for batches in training for x, _ in batches for i in ids(x)}
    assert seen == set(range(FILES))  # every good file trained; the bad one's place went to another
    assert list(skipped) == [str(bad)]
    weights = {}
    for p in range(2):
        for x, _, w in epoch(split, ProcessShard(2, p), training=False):
            for i, weight in zip(ids(x), w):
                weights.setdefault(i, []).append(float(weight))
    # 12 files fill 3 global batches: the only weight 0 is the bad file's (its black placeholder
    # reads as file 0); each good file weighs 1.
    assert sorted(sum(weights.values(), [])) == [0.0] + [1.0] * FILES
    assert all(sum(w) == 1.0 for w in weights.values())


def test_a_global_batch_the_processes_cannot_share_is_refused():
    with pytest.raises(ValueError, match="global batch of 5 cannot be shared by 2"):
        ProcessShard(2, 0).local_batch(5)
    with pytest.raises(ValueError, match="index 2 is not one of 2"):
        ProcessShard(2, 2)


def test_the_padded_validation_loss_is_corrected_to_the_mean_over_the_real_images():
    from kerasimg.training.multihost import PaddedValidationLoss
    from kerasimg.training.recipe import compile_classifier

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 5)).astype("float32"), np.array([0, 1, 2, 0, 1, 2])
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    compile_classifier(model, 0.01, weighted=True)  # as a multihost run compiles
    val = ProcessShard(1, 0).take(tf.data.Dataset.from_tensor_slices((x, y)), 6, 8, weighted=True).batch(8)
    factor = ProcessShard.padded_length(6, 8) / 6
    logs = model.fit(x, y, validation_data=val, callbacks=[PaddedValidationLoss(factor)], verbose=0).history
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert factor == 8 / 6
    assert logs["val_loss"][0] == pytest.approx(loss, rel=1e-5)
    assert logs["val_accuracy"][0] == pytest.approx(accuracy)
