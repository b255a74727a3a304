"""Why a model errs: metrics from probabilities, evaluate on any split, Grad-CAM following the evidence."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

import kerasimg.evaluate as evaluate_cli
import kerasimg.explain as explain_cli
from kerasimg.diagnose.metrics import calibration_bins, classification_metrics, expected_calibration_error
from kerasimg.diagnose.predictions import Predictions, read_predictions, write_predictions

SIZE = 64
QUADRANTS = {"top-left": (0, 0), "top-right": (0, 1), "bottom-left": (1, 0), "bottom-right": (1, 1)}


def draw(rng, quadrant=None) -> np.ndarray:
    """Dim noise; with ``quadrant``, a bright square somewhere inside that quadrant."""
    image = rng.integers(0, 70, (SIZE, SIZE, 3), dtype=np.uint8)
    if quadrant is not None:
        row, column = QUADRANTS[quadrant]
        side, half = 12, SIZE // 2
        top = row * half + int(rng.integers(2, half - side - 2))
        left = column * half + int(rng.integers(2, half - side - 2))
        image[top : top + side, left : left + side] = 255
    return image


def save(image: np.ndarray, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def square_run(tmp_path_factory):
    """small_cnn trained from scratch (seconds) to tell "a bright square in some quadrant" from "plain"."""
    import kerasimg

    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    names = list(QUADRANTS)
    for split, count in (("train", 40), ("test", 4)):
        for i in range(count):
            save(draw(rng, names[i % 4]), root / "data" / split / "square" / f"{names[i % 4]}-{i}.png")
            save(draw(rng), root / "data" / split / "plain" / f"{i}.png")
    result = kerasimg.fit(
        backbone="small_cnn",
        weights="none",
        data=str(root / "data"),
        image_size=SIZE,
        epochs=6,
        batch_size=8,
        out=str(root / "run"),
        seed=0,
        log=lambda *_: None,
    )
    return root, result


def test_grad_cam_peaks_in_the_quadrant_that_holds_the_evidence(square_run, tmp_path, capsys):
    root, result = square_run
    assert result.test_accuracy == 1.0, "the toy task is learnt, so the maps explain a working model"
    rng = np.random.default_rng(7)
    images = [save(draw(rng, q), tmp_path / "in" / f"{q}.png") for q in QUADRANTS]
    code = explain_cli.main(
        [str(result.run_dir), str(tmp_path / "in"), "--class", "square", "--out", str(tmp_path / "out")]
    )
    printed = capsys.readouterr().out
    assert code == 0 and printed.count("Grad-CAM for square") == 4
    from kerasimg.diagnose.explain import explain_images

    for r in explain_images(result.run_dir, images, class_name="square", out=tmp_path / "out"):
        quadrant = QUADRANTS[r["file"].rsplit("/", 1)[-1].removesuffix(".png")]
        peak = tuple(int(f >= 0.5) for f in r["peak"])
        assert peak == quadrant, (r["file"], r["peak"])
        assert Image.open(r["overlay"]).size[0] > 100


def test_metrics_from_probabilities_match_hand_computed_values():
    labels = np.array([0, 0, 1, 2])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.5, 0.1, 0.4]])
    m = classification_metrics(labels, probabilities, ["a", "b", "c"])
    assert m["accuracy"] == 0.5 and m["top_k"] == 2
    assert m["top_k_accuracy"] == 1.0  # every true class is in the top two
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)  # a: P=R=1/2; b: P=1/2, R=1
    # Confidences 0.9 (right), 0.7 (wrong), 0.6 (right), 0.5 (wrong) fall in four different bins.
    assert m["ece"] == pytest.approx((0.1 + 0.7 + 0.4 + 0.5) / 4)
    assert [b["count"] for b in calibration_bins(labels, probabilities) if b["count"]] == [1, 1, 1, 1]
    assert expected_calibration_error(calibration_bins(labels[:1], probabilities[:1])) == pytest.approx(0.1)
    assert m["per_class"]["a"]["support"] == 2


def test_predictions_csv_round_trips(tmp_path):
    p = Predictions(
        ["x.png", "y.png"], np.array([1, 0]), np.array([[0.25, 0.75], [0.6, 0.4]]), ["cat", "dog"]
    )
    again = read_predictions(write_predictions(p, tmp_path / "predictions.csv"))
    assert again.files == p.files and again.class_names == ["cat", "dog"]
    np.testing.assert_allclose(again.losses, -np.log([0.75, 0.6]), atol=1e-6)
    assert list(p.worst(1)) == [1]


def test_evaluate_ranks_training_files_by_loss_and_refuses_other_classes(square_run, tmp_path, capsys):
    root, result = square_run
    code = evaluate_cli.main([str(result.run_dir), "--split", "train", "--explain", "--mistakes", "3"])
    printed = capsys.readouterr().out
    assert code == 0 and "train: accuracy" in printed
    rows = list(csv.DictReader((result.run_dir / "predictions-train.csv").open()))
    metrics = json.loads((result.run_dir / "config.json").read_text())
    assert len(rows) == metrics["data_summary"]["train"]
    assert (
        Image.open(result.run_dir / "mistakes-train.png").size[0]
        < Image.open(result.run_dir / "mistakes.png").size[0]
    ), "3 images in one row, not 4 columns"
    assert (result.run_dir / "predictions.csv").read_text() != "", "the test table stays"
    # Another dataset with other classes is refused by name.
    rng = np.random.default_rng(1)
    for i in range(8):
        save(draw(rng), tmp_path / "other" / ("cat", "dog")[i % 2] / f"{i}.png")
    assert evaluate_cli.main([str(result.run_dir), "--data", str(tmp_path / "other")]) == 2
    assert "has classes ['cat', 'dog'], but the run" in capsys.readouterr().err


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Written into the DOM after every image has loaded, so the dump shows what the browser decoded.
MEASURE = """<script>window.addEventListener("load", () => {
  for (const img of document.images) img.setAttribute("data-natural-width", img.naturalWidth);
  document.body.setAttribute("data-measured", document.images.length);
});</script>"""


# Where the figures landed and what sticks out past the viewport, measured inside an iframe of exactly
# the width under test (headless Chromium will not make a window narrower than 500 px) and posted to
# the parent page, whose DOM the dump shows.
LAYOUT = """<script>window.addEventListener("load", () => {
  const figures = [...document.querySelectorAll("figure")];
  const at = (title) => figures.find((f) => f.querySelector("h3").textContent.startsWith(title));
  const edge = document.documentElement.clientWidth;
  const visible = (e) => getComputedStyle(e).overflowX === "visible";
  const out = [...document.querySelectorAll("main *")].filter(
    (e) => e.getBoundingClientRect().right > edge + 0.5 || (visible(e) && e.scrollWidth > e.clientWidth + 1));
  parent.postMessage({
    width: window.innerWidth,
    overflow: document.documentElement.scrollWidth - edge,
    offenders: out.map((e) => `${e.tagName}.${e.className} "${e.textContent.slice(0, 40)}"`),
    confusion: at("Confusion").offsetTop,
    reliability: at("Reliability").offsetTop,
    curveswidth: at("Curves").offsetWidth,
    confusionwidth: at("Confusion").offsetWidth,
  }, "*");
});</script>"""


def viewport(page, width):
    """A page that shows ``page`` in an iframe ``width`` CSS pixels wide and records its layout message."""
    return (
        '<!doctype html><html><body style="margin:0">'
        f'<iframe src="{page.name}" style="width:{width}px;height:2000px;border:0"></iframe>'
        '<script>addEventListener("message", (e) => '
        'document.body.setAttribute("data-layout", JSON.stringify(e.data)));</script></body></html>'
    )


def chromium(*args, profile):
    import shutil
    import subprocess

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip(
            "Debian's chromium is not installed (.ci/run installs it); the report is not browser-checked"
        )
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def test_report_renders_in_headless_chromium_with_tables_filled_and_every_image_loaded(square_run, tmp_path):
    import html
    import json
    import re

    import kerasimg.report as report_cli

    _, result = square_run
    page = result.run_dir / "report.html"
    assert page.is_file(), "fit writes the report"
    assert report_cli.main([str(result.run_dir)]) == 0
    text = page.read_text()
    assert "http://" not in text and "https://" not in text, "nothing is fetched"
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", MEASURE + "</body>"))
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert re.search(r'data-measured="(\d+)"', dom).group(1) == "4" and len(widths) == 4
    assert all(w > 0 for w in widths), widths
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", dom)
    assert "small_cnn" in cells and "square" in cells and "plain" in cells
    assert "100.00%" in cells, "the test accuracy of the learnt toy task is in the metrics table"
    assert str(tmp_path.parent) not in text, "no absolute path of this machine"
    headline = dict(zip(*[re.findall(rf'class="{c}">([^<]*)<', text) for c in ("label", "value")]))
    assert headline["test accuracy"] == "100.00%" and headline["best epoch"].endswith(" of 6"), headline
    # The layout the reader gets: two figure columns on a laptop, one on a phone, never a sideways scroll.
    probe.write_text(text.replace("</body>", LAYOUT + "</body>"))
    layouts = {}
    for width in (1280, 390):
        frame = tmp_path / f"viewport-{width}.html"
        frame.write_text(viewport(probe, width))
        dom = chromium(
            "--window-size=1400,2100",
            "--virtual-time-budget=10000",
            "--dump-dom",
            frame.as_uri(),
            profile=tmp_path / "profile",
        )
        layouts[width] = json.loads(html.unescape(re.search(r'data-layout="([^"]*)"', dom).group(1)))
        assert layouts[width]["width"] == width, layouts[width]
    wide, phone = layouts[1280], layouts[390]
    assert wide["overflow"] <= 0 and not wide["offenders"], wide
    assert phone["overflow"] <= 0 and not phone["offenders"], phone
    assert wide["confusion"] == wide["reliability"], "confusion matrix and reliability side by side"
    assert wide["curveswidth"] > 1.8 * wide["confusionwidth"], "the two-panel curves take the whole row"
    assert phone["reliability"] > phone["confusion"], "one column on a phone"


def test_vit_grad_cam_splits_the_backbone_exactly_and_maps_the_patch_grid():
    """ViT is explained on the tokens entering its last layer: the split must recompose the backbone."""
    import keras

    from kerasimg.diagnose.gradcam import grad_cam
    from kerasimg.models import backbone_of, build_classifier, get_backbone

    keras.utils.set_random_seed(0)
    model = build_classifier("vit_tiny16", 3, image_size=48, weights="none")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    backbone = backbone_of(model)
    front, back = get_backbone("vit_tiny16").explain_split(backbone)
    np.testing.assert_allclose(np.asarray(back(front(pixels))), np.asarray(backbone(pixels)), atol=1e-5)
    maps, probabilities = grad_cam(model, pixels, "vit_tiny16")
    assert maps.shape == (2, 3, 3), "48 px in 16 px patches: a 3x3 grid, the class token dropped"
    assert np.all(maps >= 0) and np.all(maps.max(axis=(1, 2)) > 0), "some patch carries evidence"
    np.testing.assert_allclose(probabilities, np.asarray(model(pixels)), atol=1e-5)


def test_a_zoo_model_is_explained_through_its_run_and_the_report_lists_the_export(square_run, tmp_path):
    """zoo.json records each version's run; the SavedModel itself is not opened (faked here)."""
    from kerasimg.diagnose.explain import run_of
    from kerasimg.diagnose.report import write_run_report
    from kerasimg.errors import UserError

    _, result = square_run
    zoo = tmp_path / "zoo"
    (zoo / "squares" / "1").mkdir(parents=True)
    (zoo / "squares" / "1" / "saved_model.pb").write_bytes(b"")
    entry = {"name": "squares", "version": 1, "path": str(zoo / "squares" / "1"), "exported": "today"}
    (zoo / "zoo.json").write_text(json.dumps({"models": [{**entry, "run": str(result.run_dir.resolve())}]}))
    assert run_of("squares", zoo).path == result.run_dir
    assert run_of(zoo / "squares" / "1", zoo).path == result.run_dir
    page = write_run_report(result.run_dir, zoo).read_text()
    # Paths are relative to the page: the link still works where the run and zoo folders are copied.
    shown = os.path.relpath(zoo / "squares" / "1", result.run_dir)
    assert (
        f"Zoo exports (1, in {os.path.relpath(zoo, result.run_dir)})" in page and f"<td>{shown}</td>" in page
    )
    assert str(tmp_path) not in page and str(result.run_dir.resolve()) not in page  # no machine path
    assert 'name="viewport"' in page
    (zoo / "zoo.json").write_text(json.dumps({"models": [entry]}))
    with pytest.raises(UserError, match="the zoo does not record one; pass a run directory instead"):
        run_of("squares", zoo)


def test_the_report_caption_follows_whether_grad_cam_was_drawn(square_run):
    _, result = square_run
    report = result.run_dir / "report.html"
    caption = "Highest-loss test images (Grad-CAM for the predicted class)"
    assert caption in report.read_text()  # fit draws Grad-CAM on the mistakes
    assert evaluate_cli.main([str(result.run_dir)]) == 0  # redraws mistakes.png without heat maps
    assert caption not in report.read_text() and "Highest-loss test images" in report.read_text()
    assert evaluate_cli.main([str(result.run_dir), "--explain"]) == 0
    assert caption in report.read_text()
