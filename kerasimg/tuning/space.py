"""The compound-scaling search space: a grid of alpha, beta, gamma under a FLOPs constraint.

EfficientNet's step 1 (Tan & Le, 2019) fixes phi = 1 and searches depth (alpha),
width (beta) and resolution (gamma) multipliers with alpha * beta^2 * gamma^2 ~ 2, so
that each step of phi about doubles FLOPs. Only the triples that meet the constraint
within ``tolerance`` are ever trained; the rest of the grid is never built.
A space can be read from a TOML file (``tuning/compound.toml`` ships the default).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from kerasimg.errors import UserError
from kerasimg.tomlfile import kind_of, read_toml

# Tolerance for float rounding at the constraint's edge (1.1 * 1.2**2 * ... is not exact).
_EPSILON = 1e-9
# Refused above these: 1000 values per axis, and more trials than any search could train.
MAX_GRID_POINTS = 1000**3
MAX_TRIALS = 100_000


@dataclass(frozen=True)
class Triple:
    alpha: float
    beta: float
    gamma: float

    @property
    def cost(self) -> float:
        """alpha * beta^2 * gamma^2: how much FLOPs grow per step of phi."""
        return self.alpha * self.beta**2 * self.gamma**2

    def label(self) -> str:
        return f"a{self.alpha:g} b{self.beta:g} g{self.gamma:g}"


@dataclass(frozen=True)
class CompoundSpace:
    """The grid, the constraint and the scale at which trials are built."""

    alpha: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.4)
    beta: tuple[float, ...] = (1.0, 1.05, 1.1, 1.15, 1.2)
    gamma: tuple[float, ...] = (1.0, 1.05, 1.1, 1.15, 1.2)
    phi: float = 1.0
    target: float = 2.0
    tolerance: float = 0.1
    base_resolution: int = 224

    def __post_init__(self):
        for name in ("alpha", "beta", "gamma"):
            values = getattr(self, name)
            if isinstance(values, (int, float)):
                values = (values,)
            if isinstance(values, str):  # a string is iterable: "12" would read as {1, 2}
                raise UserError(f"--{name} must be numbers, not a string. Received: {name}={values!r}")
            try:
                values = tuple(sorted({float(v) for v in values}))
            except (TypeError, ValueError):
                raise UserError(f"--{name} must be numbers. Received: {name}={values!r}") from None
            object.__setattr__(self, name, values)

    def validate(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            values = getattr(self, name)
            if not values:
                raise UserError(f"--{name} needs at least one value. Received: {name}=()")
            if min(values) < 1 or not all(math.isfinite(v) for v in values):
                raise UserError(
                    f"--{name} values must be finite and >= 1 (a coefficient below 1 shrinks the "
                    f"network). Received: {name}={','.join(f'{v:g}' for v in values)}"
                )
        for name in ("phi", "target", "tolerance"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise UserError(f"--{name} must be a number. Received: {name}={value!r}")
        if not self.phi > 0:
            raise UserError(f"--phi must be positive. Received: phi={self.phi}")
        if not self.target >= 1:
            raise UserError(f"--target must be at least 1. Received: target={self.target}")
        if not self.tolerance >= 0:
            raise UserError(f"--tolerance must be >= 0. Received: tolerance={self.tolerance}")
        if not isinstance(self.base_resolution, int) or isinstance(self.base_resolution, bool):
            raise UserError(
                "--base-resolution must be a whole number of pixels. "
                f"Received: base_resolution={self.base_resolution!r}"
            )
        if self.base_resolution < 32:
            raise UserError(
                "--base-resolution must be at least 32 pixels. "
                f"Received: base_resolution={self.base_resolution}"
            )

    def grid(self) -> list[Triple]:
        """Every point of the grid (small grids and tests only: the search never builds it)."""
        return [Triple(a, b, g) for a, b, g in itertools.product(self.alpha, self.beta, self.gamma)]

    @property
    def grid_size(self) -> int:
        return len(self.alpha) * len(self.beta) * len(self.gamma)

    def _fits(self, triple: Triple) -> bool:
        return abs(triple.cost - self.target) <= self.tolerance + _EPSILON

    def _gamma_ranges(self):
        """(alpha, beta, first, stop): the feasible gammas of each pair are gamma[first:stop].

        alpha * beta^2 * gamma^2 grows with gamma, so the constraint bounds gamma to one
        interval per (alpha, beta), found by bisection: the work is |alpha| * |beta| *
        log |gamma|, never the size of the full product. The ends are checked with the
        exact test, so float rounding at the edge gives the same set as the brute force.
        """
        gammas, low, high = self.gamma, self.target - self.tolerance, self.target + self.tolerance
        for a in self.alpha:
            for b in self.beta:
                scale = a * b * b
                first = bisect.bisect_left(gammas, math.sqrt(max(low, 0.0) / scale) * (1 - 1e-9))
                stop = bisect.bisect_right(gammas, math.sqrt(max(high, 0.0) / scale) * (1 + 1e-9))
                while first < stop and not self._fits(Triple(a, b, gammas[first])):
                    first += 1
                while stop > first and not self._fits(Triple(a, b, gammas[stop - 1])):
                    stop -= 1
                yield a, b, first, stop

    def count_feasible(self) -> int:
        return sum(stop - first for _, _, first, stop in self._gamma_ranges())

    def feasible(self) -> list[Triple]:
        """The grid's triples with |alpha * beta^2 * gamma^2 - target| <= tolerance, in grid order."""
        return [Triple(a, b, g) for a, b, first, stop in self._gamma_ranges() for g in self.gamma[first:stop]]

    def nearest(self) -> Triple:
        """The grid's triple whose cost is closest to the target (next to where target's gamma would be)."""
        best = None
        for a in self.alpha:
            for b in self.beta:
                i = bisect.bisect_left(self.gamma, math.sqrt(self.target / (a * b * b)))
                for g in self.gamma[max(i - 1, 0) : i + 1]:
                    t = Triple(a, b, g)
                    if best is None or abs(t.cost - self.target) < abs(best.cost - self.target):
                        best = t
        return best

    def resolution(self, triple: Triple) -> int:
        return round(self.base_resolution * triple.gamma**self.phi)

    def require_feasible(self) -> list[Triple]:
        """The feasible triples, or an error that names the nearest cost the grid can reach.

        Grids above ``MAX_GRID_POINTS`` points, or with more than ``MAX_TRIALS``
        feasible triples (each one a training run), are refused with their size.
        """
        self.validate()
        if self.grid_size > MAX_GRID_POINTS:
            raise UserError(
                f"The grid has {self.grid_size:,} points ({len(self.alpha)} x {len(self.beta)} x "
                f"{len(self.gamma)}); at most {MAX_GRID_POINTS:,} are searched. Use fewer values per axis."
            )
        count = self.count_feasible()
        if count > MAX_TRIALS:
            raise UserError(
                f"{count:,} triples of the grid meet the constraint; a search trains each one, and at most "
                f"{MAX_TRIALS:,} are allowed. Use fewer values per axis or a smaller --tolerance."
            )
        triples = self.feasible()
        if not triples:
            nearest = self.nearest()
            raise UserError(
                f"No triple of the grid has alpha*beta^2*gamma^2 within {self.tolerance:g} of "
                f"{self.target:g}; the nearest is {nearest.label()} with {nearest.cost:.3f}. "
                "Widen the grid or raise --tolerance."
            )
        return triples

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_space_file(path: str | Path) -> dict:
    """The keys of a search-space TOML file, each checked for its name and type.

    The schema follows ``CompoundSpace`` and ``TrialTraining``; a mistake is one
    ``UserError`` naming the file, the line and the key.
    """
    from kerasimg.tuning.trial import TrialTraining

    file = read_toml(path, "search-space file")
    schema = {f.name: kind_of(f.type) for f in dataclasses.fields(CompoundSpace)}
    schema |= {f.name: kind_of(f.type) for f in dataclasses.fields(TrialTraining) if f.name in TRAINING_KEYS}
    values = file.check(file.data, schema)
    for name in ("alpha", "beta", "gamma"):
        if isinstance(values.get(name), list) and not values[name]:
            raise file.error(f"{name!r} needs at least one value. Received: {name}=[]", name)
    return values


# Keys a space file may also set for the trials' training.
TRAINING_KEYS = ("epochs", "batch_size", "lr", "data", "recipe", "augment")
