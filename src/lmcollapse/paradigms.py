"""The data paradigms as objects: the one definition of what generation n trains on (Sec. 2.1.1).

Sources are numbered: 0 is D0 (the real training data), j ≥ 1 is S_j, the corpus generation j
generated. In the paper's count form generation n trains on the counts

    b[n] = Σ_src w_src · y[src],    y[0] = N (D0's counts), y[j] = S_j's counts in units of |D0|

with the weights of each paradigm (n = 1 trains on D0 alone, {0: 1}, under every paradigm):

    Replace                  {n-1: 1}
    AccumulateSubsample(k)   {0: 1/(1+(n-1)k), j: k/(1+(n-1)k) for every j < n}
    Accumulate(k)            {0: 1, j: k for every j < n}   (whole sources, each S_j of k·|D0|)
    Mix(λ)                   {0: λ, n-1: 1-λ}

Fresh real data (`fresh` = r, Replace and the accumulating paradigms): after each generation j,
r·|D0| of new real stories F_j join the corpus (source −j). They are real data, so in the count
form they join D0's term — f[j] ≈ N, D0-like counts — and the weights become

    Replace + fresh r                 {n-1: 1, −(n-1): r}
    AccumulateSubsample(k) + fresh r  {0, −j: 1 or r, j: k, all over 1+(n-1)(k+r)}
    Accumulate(k) + fresh r           {0: 1, −j: r, j: k}

so generation n's real share under Accumulate-Subsample is (1+(n-1)r)/(1+(n-1)(k+r)).

Each class writes its weights once, as `terms(n)`: b[n] = (real·N + each·Y) / norm with Y the
last corpus y[n-1] or the pooled Σ_{j<n} y[j] — the form that lets a consumer keep one running
sum instead of every y[j] (O(G·V) over G generations), and the paper's own way of writing Eq. (6).
`weights`, `needs`, `shares` and `real_share` are derived from it; the data composition, the
expected counts of the n-gram family, the theory and the bridge all read these, so a paradigm's
recurrence is written in this file only. Pure Python: the theory imports it and runs anywhere.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

from lmcollapse.errors import InvalidInput


def check_rate(k: object, name: str = "k") -> list[str]:
    """The one check of an accumulation rate k (S_j holds k·|D0|): a finite number > 0. `name`
    is the field a message names (a config key, `k[2]` of a list)."""
    if not (_is_number(k) and math.isfinite(k) and k > 0):
        return [f"{name}: must be > 0 and finite (the accumulation rate), got {k!r}"]
    return []


def check_share(lam: object, name: str = "lam") -> list[str]:
    """The one check of Mix's real-data share λ: a finite number in [0, 1] (λ = 0 is Replace,
    λ = 1 the all-real control)."""
    if not (_is_number(lam) and math.isfinite(lam) and 0 <= lam <= 1):
        return [f"{name}: must be in [0, 1] (the real-data share of mix), got {lam!r}"]
    return []


def check_fresh(r: object, name: str = "fresh") -> list[str]:
    """The one check of a fresh-data rate r (each generation adds r·|D0| new real stories):
    a finite number >= 0 (0: none, the paper)."""
    if not (_is_number(r) and math.isfinite(r) and r >= 0):
        return [f"{name}: must be >= 0 and finite (the fresh real data rate), got {r!r}"]
    return []


def _is_number(x: object) -> bool:
    """A real number (numpy scalars too), not a bool or a numeric string."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


class Terms(NamedTuple):
    """Generation n's weights in closed form: b[n] = (real·y[0] + each·Y) / norm, where Y is
    Σ_{j<n} y[j] when `pooled` (every S_j carries the weight `each`), else y[n-1] alone. `real`
    includes the fresh real corpora F_j, each of weight `fresh` (D0's own weight is
    real − fresh·(n−1) when pooled, real − fresh otherwise)."""

    real: float
    each: float
    pooled: bool
    norm: float = 1.0
    fresh: float = 0.0


_FIRST = Terms(1.0, 0.0, False)  # generation 1 trains on all of D0, under every paradigm


class Paradigm(ABC):
    """What generation n trains on. Subclasses define `_terms(n)` for n ≥ 2 — the weights — and
    everything else here is derived from it."""

    name: ClassVar[str]
    accumulating: ClassVar[bool] = False
    """Every S_j stays a source (and holds k·|D0|), so the training data grows or is pooled."""
    subsampled: ClassVar[bool] = False
    """The training set holds |D0|, drawn from its sources at their weights (their shares);
    otherwise each source is taken whole."""

    @property
    def scale(self) -> float:
        """|S_n| / |D0|: how much each generation generates, in D0's size."""
        return 1.0

    def check(self) -> list[str]:
        """The parameters' problems, each naming its field (empty when the paradigm is usable)."""
        return check_fresh(self.fresh)

    def ensure_valid(self) -> None:
        """Raise InvalidInput, in one line that names the problem and the fix, unless usable."""
        problems = self.check()
        if problems:
            raise InvalidInput(f"paradigm {self.name!r}: " + "; ".join(problems))

    @abstractmethod
    def _terms(self, n: int) -> Terms:
        """Generation n's weights for n ≥ 2."""

    def terms(self, n: int) -> Terms:
        """Generation n's weights as real·y[0] + each·(Σ_{j<n} y[j] or y[n-1]), over norm."""
        if n < 1:
            raise InvalidInput(f"generation must be >= 1, got {n}")
        return _FIRST if n == 1 else self._terms(n)

    fresh: float = 0.0  # r: each generation adds r·|D0| of fresh real stories (F_j, source −j)

    def weights(self, n: int) -> dict[int, float]:
        """{source: w} with b[n] = Σ w·y[source]: D0 (0) first, then the fresh F_j (−j) and the
        S_j (j) by j; a source of weight 0 is no source."""
        t = self.terms(n)
        js = range(1, n) if t.pooled else (n - 1,)
        d0 = t.real - t.fresh * len(js) if n > 1 else t.real
        out = {0: d0 / t.norm} if d0 > 1e-12 * max(t.real, 1) else {}
        if t.fresh and n > 1:
            out |= {-j: t.fresh / t.norm for j in js}
        if t.each:
            out |= dict.fromkeys(js, t.each / t.norm)
        return out

    def needs(self, n: int) -> list[int]:
        """The sources generation n trains on (0: D0, j: S_j), in order."""
        return list(self.weights(n))

    def shares(self, n: int) -> list[tuple[int, float | None]]:
        """Generation n's sources with their share of a |D0|-sized training set, or None where
        the source is taken whole (generation 1, Replace, Accumulate)."""
        w = self.weights(n)
        if n == 1 or not self.subsampled:
            return [(src, None) for src in w]
        return list(w.items())

    def real_share(self, n: int) -> float:
        """D0's weight over the sum of the weights: the share of the training data that is real
        (1, then 0 under Replace, 1/(1+(n-1)k) under Accumulate-Subsample, λ under Mix)."""
        t = self.terms(n)
        return t.real / (t.real + ((n - 1) * t.each if t.pooled else t.each))


@dataclass(frozen=True)
class Replace(Paradigm):
    """Generation n trains only on S_{n-1}, all of it (Eq. 4)."""

    fresh: float = 0.0
    name: ClassVar[str] = "replace"

    def _terms(self, n: int) -> Terms:
        # S_{n-1} and F_{n-1} whole: b[n] = (r·N + y[n-1]) / (1 + r), D0-like counts for F_{n-1}
        return Terms(self.fresh, 1.0, False, 1.0 + self.fresh, fresh=self.fresh)


@dataclass(frozen=True)
class AccumulateSubsample(Paradigm):
    """Every generation adds k·|D0| to the pool; generation n trains on |D0| of D0 and S_1..S_{n-1}
    in proportion to their sizes: 1/(1+(n-1)k) from D0, k/(1+(n-1)k) from each S_j (Eq. 6)."""

    k: float = 1.0
    fresh: float = 0.0
    name: ClassVar[str] = "accumulate-subsample"
    accumulating: ClassVar[bool] = True
    subsampled: ClassVar[bool] = True

    @property
    def scale(self) -> float:
        return self.k

    def check(self) -> list[str]:
        return check_rate(self.k) + check_fresh(self.fresh)

    def _terms(self, n: int) -> Terms:
        norm = 1.0 + (n - 1) * (self.k + self.fresh)
        if not math.isfinite(norm):
            raise InvalidInput(
                f"accumulate-subsample with k = {self.k:g}: 1 + (n-1)k overflows at generation "
                f"{n}; use a smaller k"
            )
        real = 1.0 + (n - 1) * self.fresh
        return Terms(real, self.k, True, norm, self.fresh)


@dataclass(frozen=True)
class Accumulate(Paradigm):
    """Generation n trains on all of D0 and every S_j (j < n), each S_j holding k·|D0|."""

    k: float = 1.0
    fresh: float = 0.0
    name: ClassVar[str] = "accumulate"
    accumulating: ClassVar[bool] = True

    @property
    def scale(self) -> float:
        return self.k

    def check(self) -> list[str]:
        return check_rate(self.k) + check_fresh(self.fresh)

    def _terms(self, n: int) -> Terms:
        return Terms(1.0 + (n - 1) * self.fresh, self.k, True, fresh=self.fresh)


@dataclass(frozen=True)
class Mix(Paradigm):
    """Generation n trains on |D0|: λ of it from D0, 1-λ from S_{n-1} (λ = 0 is Replace, λ = 1
    trains on D0 alone; the Limitations case of a real share that does not vanish)."""

    lam: float = 0.5
    fresh: float = 0.0  # refused: see check
    name: ClassVar[str] = "mix"
    subsampled: ClassVar[bool] = True

    def check(self) -> list[str]:
        return check_share(self.lam) + (
            [f"fresh: mix fixes the real share at λ; fresh data is for {', '.join(FRESH)}"]
            if self.fresh
            else []
        )

    def _terms(self, n: int) -> Terms:
        return Terms(self.lam, 1.0 - self.lam, False)


_BUILD: dict[str, Callable[[float, float, float], Paradigm]] = {
    Replace.name: lambda k, lam, r: Replace(r),
    AccumulateSubsample.name: lambda k, lam, r: AccumulateSubsample(k, r),
    Accumulate.name: lambda k, lam, r: Accumulate(k, r),
    Mix.name: lambda k, lam, r: Mix(lam, r),
}
PARADIGMS: tuple[str, ...] = tuple(_BUILD)  # the config's names, in the config's order
FRESH = ("replace", "accumulate-subsample", "accumulate")  # the paradigms fresh data joins


def paradigm_of(name: str, k: float = 1.0, lam: float = 0.5, fresh: float = 0.0) -> Paradigm:
    """The paradigm called `name` with its parameter (k or λ; the other is ignored) and its
    fresh-data rate, checked: raises InvalidInput for an unknown name or an unusable
    parameter."""
    if name not in _BUILD:
        raise InvalidInput(f"unknown paradigm {name!r}: choose one of {', '.join(PARADIGMS)}")
    par = _BUILD[name](k, lam, fresh)
    par.ensure_valid()
    return par


class _Settings(Protocol):
    """What `from_config` reads: config.ParadigmConfig (not imported: the config imports this
    module for its validation)."""

    @property
    def name(self) -> str: ...
    @property
    def k(self) -> float: ...
    @property
    def lam(self) -> float: ...


def from_config(cfg: _Settings) -> Paradigm:
    """The paradigm an experiment's `paradigm:` section (ParadigmConfig) describes."""
    return paradigm_of(cfg.name, cfg.k, cfg.lam, getattr(cfg, "fresh", 0.0))


__all__ = [
    "PARADIGMS",
    "Accumulate",
    "AccumulateSubsample",
    "Mix",
    "Paradigm",
    "Replace",
    "Terms",
    "check_fresh",
    "check_rate",
    "check_share",
    "from_config",
    "paradigm_of",
]
