"""Where each phase trains (``kerasimg.training.phase_sources``): chosen without reading data or training."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers import tiny_config

from kerasimg.models import build_classifier, get_backbone
from kerasimg.training import multihost
from kerasimg.training.phase_sources import (
    BOUNDARY,
    FEATURES,
    IMAGES,
    PhaseData,
    get_source,
    register_source,
)


def test_each_source_is_registered_once_under_its_name():
    assert [get_source(name).name for name in (IMAGES, FEATURES, BOUNDARY)] == [IMAGES, FEATURES, BOUNDARY]
    with pytest.raises(ValueError, match="A phase source named 'images' is already registered"):
        register_source(IMAGES)(type("Pixels", (), {}))
    assert type(get_source(IMAGES)).__name__ == "_Images"
    with pytest.raises(
        ValueError, match=r"expected one of \['boundary', 'features', 'images'\]. Received: 'pixels'"
    ):
        get_source("pixels")


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        (multihost.SingleProcess(SimpleNamespace(num_replicas_in_sync=1)), [FEATURES, BOUNDARY, IMAGES]),
        # A multihost predict() returns one process's shard: no cache, every phase on images.
        (multihost.Cluster(0, 2, SimpleNamespace(num_model_replicas=2)), [IMAGES, IMAGES, IMAGES]),
    ],
)
def test_cached_phases_until_the_backbone_trains_whole_unless_the_cluster_cannot_extract(
    cluster, expected, tmp_path
):
    schedule = "0:head,1:block4,2:all"
    config = tiny_config(tmp_path, tmp_path / "run", schedule=schedule, epochs=3, augment="none")
    resolved = config.resolve()
    model = build_classifier("small_cnn", 2, image_size=32, weights="none")
    data = PhaseData(resolved, None, None, model, get_backbone("small_cnn"), 8, cluster, log=print)
    assert [data.source(i, phase).name for i, phase in enumerate(resolved.phases)] == expected
