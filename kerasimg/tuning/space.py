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
import tomllib
from dataclasses import dataclass
from pathlib import Path

from kerasimg.errors import UserError

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
        if not self.phi > 0:
            raise UserError(f"--phi must be positive. Received: phi={self.phi}")
        if not self.target >= 1:
            raise UserError(f"--target must be at least 1. Received: target={self.target}")
        if not self.tolerance >= 0:
            raise UserError(f"--tolerance must be >= 0. Received: tolerance={self.tolerance}")
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
    """The keys of a search-space TOML file, checked against ``CompoundSpace`` and training keys."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"Search-space file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path} is not valid TOML: {error}") from None
    allowed = {f.name for f in dataclasses.fields(CompoundSpace)} | set(TRAINING_KEYS)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise UserError(
            f"{path}: unknown key(s) {', '.join(unknown)}. Known keys: {', '.join(sorted(allowed))}"
        )
    return values


# Keys a space file may also set for the trials' training.
TRAINING_KEYS = ("epochs", "batch_size", "lr", "data", "augment")
