"""The compound-scaling search space: a grid of alpha, beta, gamma under a FLOPs constraint.

EfficientNet's step 1 (Tan & Le, 2019) fixes phi = 1 and searches depth (alpha),
width (beta) and resolution (gamma) multipliers with alpha * beta^2 * gamma^2 ~ 2, so
that each step of phi about doubles FLOPs. Only the triples that meet the constraint
within ``tolerance`` are ever trained; the rest of the grid is never built.
A space can be read from a TOML file (``tuning/compound.toml`` ships the default).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from kerasimg.errors import UserError
from kerasimg.tomlfile import kind_of, read_toml

# Tolerance for float rounding at the constraint's edge (1.1 * 1.2**2 * ... is not exact).
_EPSILON = 1e-9


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
        return [Triple(a, b, g) for a, b, g in itertools.product(self.alpha, self.beta, self.gamma)]

    def feasible(self) -> list[Triple]:
        """The grid's triples with |alpha * beta^2 * gamma^2 - target| <= tolerance, in grid order."""
        return [t for t in self.grid() if abs(t.cost - self.target) <= self.tolerance + _EPSILON]

    def resolution(self, triple: Triple) -> int:
        return round(self.base_resolution * triple.gamma**self.phi)

    def require_feasible(self) -> list[Triple]:
        """The feasible triples, or an error that names the nearest cost the grid can reach."""
        self.validate()
        triples = self.feasible()
        if not triples:
            nearest = min(self.grid(), key=lambda t: abs(t.cost - self.target))
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
    from kerasimg.tuning.hypermodel import TrialTraining

    file = read_toml(path, "search-space file")
    schema = {f.name: kind_of(f.type) for f in dataclasses.fields(CompoundSpace)}
    schema |= {f.name: kind_of(f.type) for f in dataclasses.fields(TrialTraining) if f.name in TRAINING_KEYS}
    values = file.check(file.data, schema)
    for name in ("alpha", "beta", "gamma"):
        if isinstance(values.get(name), list) and not values[name]:
            raise file.error(f"{name!r} needs at least one value. Received: {name}=[]", name)
    return values


# Keys a space file may also set for the trials' training.
TRAINING_KEYS = ("epochs", "batch_size", "lr", "data", "augment")
