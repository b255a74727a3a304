"""scikit-learn's digits written as an image folder: the real-data set of the recipe comparisons."""

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from kerasimg.benchmarks import digits
from kerasimg.data.sources import load_data
from kerasimg.errors import UserError


def test_the_digits_folder_holds_every_scan_once_split_stratified_and_loads_as_ten_classes(tmp_path):
    out = tmp_path / "digits"
    counts = digits.write_digits(out, size=8, test_fraction=0.25, seed=1)
    scans = load_digits()
    assert counts == {"train": 1347, "test": 450}
    files = sorted(out.glob("*/*/*.png"))
    assert sorted(int(f.stem) for f in files) == list(range(len(scans.images)))
    for f in files[::97]:  # at 8 px the pixels are the scan's ink levels, scaled to 0..255
        index, label = int(f.stem), int(f.parent.name)
        assert label == scans.target[index]
        assert np.array_equal(np.asarray(Image.open(f)), (scans.images[index] * 255 / 16).round())
    test_share = [
        len(list((out / "test" / str(d)).glob("*.png"))) / np.sum(scans.target == d) for d in range(10)
    ]
    assert max(test_share) - min(test_share) < 0.02, test_share

    data = load_data(str(out), verify=False, log=lambda *_: None)
    assert data.class_names == [str(d) for d in range(10)]
    assert len(data.test.paths) == 450 and len(data.train.paths) + len(data.val.paths) == 1347


def test_an_existing_folder_is_refused_and_left_as_it_was(tmp_path):
    out = tmp_path / "digits"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="only where nothing is yet.*digits"):
        digits.write_digits(out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    for flags in (["--size", "4"], ["--test-fraction", "0.001"]):  # one line, nothing written
        assert digits.main([str(tmp_path / "bad"), *flags]) == 2 and not (tmp_path / "bad").exists()
