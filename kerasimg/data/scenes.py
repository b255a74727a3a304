"""``scenes``: a procedurally drawn stand-in for Intel Image Classification.

It exists so the quick start, the tests and the demos run offline. Every image is
drawn from its class's *structure* (a skyline with window grids, trunks under a
canopy, jagged ice, ridge silhouettes, a horizon over waves, a road in
perspective) with a palette drawn from one distribution shared by all classes,
random lighting, positions and noise. Colour statistics alone therefore do not
separate the classes (``tests/test_scenes.py`` proves a colour-only baseline stays
below 60%), while a small CNN learns them. It is a demo, not a benchmark.

The files are written in Intel's exact layout::

    seg_train/seg_train/<class>/<n>.jpg
    seg_test/seg_test/<class>/<n>.jpg
    seg_pred/seg_pred/<n>.jpg
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from kerasimg.files import atomic_folder, kerasimg_home

CLASS_NAMES = ("buildings", "forest", "glacier", "mountain", "sea", "street")
IMAGE_SIZE = 150
# Bump when the drawing changes so cached copies are regenerated.
DRAWING_VERSION = 1

_Canvas = np.ndarray  # float32 [H, W, 3] in [0, 1]


def _colour(rng: np.random.Generator) -> np.ndarray:
    """One colour from the palette distribution that every class shares."""
    h, s, v = rng.random(), rng.uniform(0.15, 0.9), rng.uniform(0.25, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float = 0.12) -> np.ndarray:
    return np.clip(colour + rng.normal(0, amount, 3), 0, 1).astype(np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return ys, xs


def _draw_buildings(rng, img, palette, ys, xs):
    sky, wall, window, _ = palette
    img[:] = sky
    size = img.shape[0]
    for _ in range(rng.integers(3, 8)):
        w = rng.integers(15, 45)
        x0 = rng.integers(-10, size - 10)
        top = rng.integers(size // 8, size - 30)
        x1 = min(size, x0 + w)
        x0 = max(0, x0)
        img[top:, x0:x1] = _jitter(rng, wall)
        step_y, step_x = rng.integers(6, 11), rng.integers(6, 11)
        win_h, win_w = rng.integers(2, 5), rng.integers(2, 5)
        in_wall = (ys >= top + 3) & (xs >= x0 + 2) & (xs < x1 - 2)
        windows = in_wall & ((ys - top) % step_y < win_h) & ((xs - x0) % step_x < win_w)
        img[windows] = _jitter(rng, window, 0.05)


def _draw_forest(rng, img, palette, ys, xs):
    canopy, trunk, leaves, ground = palette
    size = img.shape[0]
    img[:] = canopy
    ground_y = rng.integers(size * 3 // 4, size)
    img[ground_y:] = ground
    for _ in range(rng.integers(5, 13)):
        x0 = rng.integers(0, size)
        w = rng.integers(3, 9)
        img[:, x0 : x0 + w] = _jitter(rng, trunk, 0.06)
    shades = [_jitter(rng, leaves, 0.08) for _ in range(3)]
    for _ in range(rng.integers(60, 140)):
        cy, cx = rng.uniform(0, size * 0.65), rng.uniform(0, size)
        r = rng.uniform(4, 12)
        img[(ys - cy) ** 2 + (xs - cx) ** 2 < r * r] = shades[rng.integers(0, 3)]


def _draw_glacier(rng, img, palette, ys, xs):
    sky, ice, crack, water = palette
    size = img.shape[0]
    img[:] = sky
    # A saw-tooth skyline with sharp, irregular teeth.
    n = rng.integers(6, 14)
    knots_x = np.sort(rng.uniform(0, size, n * 2))
    knots_y = np.where(np.arange(n * 2) % 2 == 0, rng.uniform(20, 60, n * 2), rng.uniform(60, 95, n * 2))
    edge = np.interp(np.arange(size), knots_x, knots_y)
    img[ys > edge[None, :]] = ice
    water_y = rng.integers(size * 3 // 4, size)
    img[water_y:] = water
    for _ in range(rng.integers(4, 10)):
        x0, y0 = rng.uniform(0, size), rng.uniform(60, size)
        slope = rng.uniform(-2.5, 2.5)
        line = (np.abs((ys - y0) - slope * (xs - x0)) < 1.2) & (ys > edge[None, :]) & (ys < water_y)
        line &= np.abs(xs - x0) < rng.uniform(10, 35)
        img[line] = crack


def _ridge(rng, size: int, base: float, roughness: float) -> np.ndarray:
    walk = np.cumsum(rng.normal(0, roughness, size))
    kernel = np.ones(9) / 9
    walk = np.convolve(walk, kernel, mode="same")
    return base + walk - walk.mean()


def _draw_mountain(rng, img, palette, ys, xs):
    sky, far, near, snow = palette
    size = img.shape[0]
    img[:] = sky
    # One big peak shape modulated by a random walk, then a nearer, darker ridge.
    peak_x = rng.uniform(size * 0.2, size * 0.8)
    slope = rng.uniform(0.6, 1.6)
    x = np.arange(size)
    far_ridge = rng.uniform(25, 55) + slope * np.abs(x - peak_x) + _ridge(rng, size, 0, 1.2)
    img[ys > far_ridge[None, :]] = far
    snow_line = far_ridge + rng.uniform(8, 20)
    img[(ys > far_ridge[None, :]) & (ys < snow_line[None, :])] = snow
    near_ridge = _ridge(rng, size, rng.uniform(90, 125), 1.5)
    img[ys > near_ridge[None, :]] = near


def _draw_sea(rng, img, palette, ys, xs):
    sky, sea, foam, _ = palette
    horizon = rng.uniform(35, 90)
    img[:] = sky
    below = ys > horizon
    img[below] = sea
    # Waves: stripes whose spacing grows towards the viewer (perspective).
    depth = np.maximum(ys - horizon, 1e-3)
    phase = rng.uniform(0, 2 * np.pi)
    wobble = rng.uniform(1, 4) * np.sin(xs / rng.uniform(6, 14) + phase)
    stripes = np.sin(np.log(depth) * rng.uniform(8, 14) + wobble * 0.3 + phase) > rng.uniform(0.6, 0.85)
    img[below & stripes] = foam


def _draw_street(rng, img, palette, ys, xs):
    sky, side, road, marking = palette
    size = img.shape[0]
    vx, vy = rng.uniform(size * 0.3, size * 0.7), rng.uniform(size * 0.25, size * 0.5)
    img[:] = sky
    img[ys > vy] = side
    # The road: a triangle from the vanishing point to a wide base at the bottom edge.
    half_base = rng.uniform(size * 0.45, size * 0.9)
    t = np.clip((ys - vy) / (size - vy), 0, 1)
    centre = vx + (size / 2 - vx) * t
    on_road = (ys > vy) & (np.abs(xs - centre) < half_base * t)
    img[on_road] = road
    # Dashed centre line, dashes longer near the viewer.
    dash = np.sin(np.log(np.maximum(ys - vy, 1e-3)) * rng.uniform(9, 13)) > 0
    img[on_road & (np.abs(xs - centre) < 1 + 2.5 * t) & dash] = marking
    # Building facades on both sides, a few vertical edges.
    for _ in range(rng.integers(2, 6)):
        x0 = rng.uniform(0, size)
        img[(np.abs(xs - x0) < 1) & (ys > vy - rng.uniform(5, 40)) & ~on_road] = _jitter(rng, side, 0.2)


DRAWERS: dict[str, Callable] = {
    "buildings": _draw_buildings,
    "forest": _draw_forest,
    "glacier": _draw_glacier,
    "mountain": _draw_mountain,
    "sea": _draw_sea,
    "street": _draw_street,
}


def draw_scene(class_name: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Draw one ``size`` x ``size`` RGB uint8 image of ``class_name``."""
    img = np.zeros((size, size, 3), np.float32)
    ys, xs = _grid(size)
    palette = [_colour(rng) for _ in range(4)]
    DRAWERS[class_name](rng, img, palette, ys, xs)
    # Lighting: a random linear gradient, then sensor noise at a random level.
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys) / size
    img *= (rng.uniform(0.75, 1.1) + rng.uniform(0, 0.35) * ramp)[..., None]
    img += rng.normal(0, rng.uniform(0.01, 0.07), img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def scenes_dir(train_per_class: int = 200, test_per_class: int = 50, pred: int = 60, seed: int = 0) -> Path:
    """Where the demo set with these settings lives in the cache."""
    name = f"v{DRAWING_VERSION}-seed{seed}-train{train_per_class}-test{test_per_class}-pred{pred}"
    return kerasimg_home() / "datasets" / "scenes" / name


def ensure_scenes(
    train_per_class: int = 200,
    test_per_class: int = 50,
    pred: int = 60,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> Path:
    """Return the root of the demo set, generating it on first use.

    Generation is deterministic in ``seed`` and the counts. It writes into a
    temporary folder and renames it into place, so an interrupted build never
    leaves a half-written set behind.
    """
    target = Path(root) if root is not None else scenes_dir(train_per_class, test_per_class, pred, seed)
    if target.exists():
        return target
    return atomic_folder(target, lambda tmp: _write_scenes(tmp, train_per_class, test_per_class, pred, seed))


def _write_scenes(root: Path, train_per_class: int, test_per_class: int, pred: int, seed: int) -> None:
    for split, count in (("seg_train", train_per_class), ("seg_test", test_per_class)):
        for class_index, class_name in enumerate(CLASS_NAMES):
            folder = root / split / split / class_name
            folder.mkdir(parents=True)
            # One generator per (split, class) so changing one count leaves the others' images alone.
            rng = np.random.default_rng([seed, len(split), class_index])
            for i in range(count):
                _save(draw_scene(class_name, rng), folder / f"{i}.jpg")
    folder = root / "seg_pred" / "seg_pred"
    folder.mkdir(parents=True)
    rng = np.random.default_rng([seed, 99])
    for i in range(pred):
        _save(draw_scene(CLASS_NAMES[rng.integers(len(CLASS_NAMES))], rng), folder / f"{i}.jpg")


def _save(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image).save(path, quality=90)
