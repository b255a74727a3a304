"""Step 2 of compound scaling: keep the best triple and grow phi.

For phi = 0..N the network gets depth alpha^phi, width beta^phi and resolution
base * gamma^phi; the table shows its parameters and FLOPs, and how the FLOPs
growth compares with the 2^phi that alpha * beta^2 * gamma^2 ~ 2 promises
(rounding channels to multiples of 8 and repeats up makes it drift).
"""

from __future__ import annotations

import os
from pathlib import Path

from kerasimg.files import write_text
from kerasimg.models.efficientnet import EfficientNet, compound
from kerasimg.models.flops import count_flops
from kerasimg.tables import markdown_table, write_csv
from kerasimg.tuning.space import Triple

COLUMNS = [
    ("phi", "phi", "d"),
    ("depth", "depth x", ".3f"),
    ("width", "width x", ".3f"),
    ("resolution", "resolution", "d"),
    ("params", "parameters", ",d"),
    ("gflops", "GFLOPs", ".3f"),
    ("flops_growth", "FLOPs / phi=0", ".2f"),
    ("ideal_growth", "(a*b^2*g^2)^phi", ".2f"),
    ("two_to_phi", "2^phi", "d"),
]


def scale_rows(triple: Triple, max_phi: int, base_resolution: int, log=print) -> list[dict]:
    """One row per phi, each network built with an ImageNet-sized top as in the paper's table."""
    rows = []
    for phi in range(max_phi + 1):
        c = compound(phi, triple.alpha, triple.beta, triple.gamma, base_resolution=base_resolution)
        model = EfficientNet(c.width, c.depth, c.resolution, include_top=True, classes=1000)
        row = {
            "phi": phi,
            "depth": c.depth,
            "width": c.width,
            "resolution": c.resolution,
            "params": int(model.count_params()),
            "flops": count_flops(model),
            "ideal_growth": triple.cost**phi,
            "two_to_phi": 2**phi,
        }
        row["gflops"] = row["flops"] / 1e9
        row["flops_growth"] = row["flops"] / rows[0]["flops"] if rows else 1.0
        log(f"  phi={phi}: {row['resolution']} px, {row['params']:,} parameters, {row['gflops']:.3f} GFLOPs")
        rows.append(row)
    return rows


def write_scale_table(rows: list[dict], triple: Triple, directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    write_csv(directory / "scaling.csv", rows, COLUMNS)
    text = (
        f"# Compound scaling of {triple.label()} (a*b^2*g^2 = {triple.cost:.3f})\n\n"
        "EfficientNet with a 1000-way top, FLOPs per image (multiply-add = 2).\n\n"
        + markdown_table(rows, COLUMNS)
    )
    return write_text(directory / "scaling.md", text)
