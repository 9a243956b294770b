"""Configuration of a theory experiment (`lmcollapse theory`): Section 2's recurrences run on a
context's corpus counts with a chosen error sequence, for several paradigms and rates k.

The default is the paper's case: x = " there" with p(" was"|x) = 0.76 and p(" were"|x) = 0.05
(Sec. 3.2), the rest of the vocabulary grouped into a few continuations. Grouping is exact for the
counts (the recurrences are linear in them: a group's p̂ is the sum of its members' p̂ for the same
total error), but the error split is per listed token, so "uniform" errors spread differently
over 8 groups than over 50,000 tokens: the grouping is part of the error model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from lmcollapse.paradigms import check_rate, check_share
from lmcollapse.theory import TheoryParadigm

ErrorKind = Literal["constant", "iid", "harmonic", "inverse-square", "bursts"]


@dataclass(frozen=True)
class TheoryProbe:
    """The context x, its continuations v_i and their corpus counts N_{x;v_i}."""

    context: str = " there"
    """Context x (a label here; the counts below are what matters)."""
    tokens: tuple[str, ...] = (" was", " were", " lived", " is", " came", " had", " are", "<other>")
    """Continuations v_i: the vocabulary after x, rare ones grouped."""
    counts: tuple[float, ...] = (760.0, 50.0, 60.0, 30.0, 25.0, 20.0, 10.0, 45.0)
    """N_{x;v_i}, one per token (N_x is their sum). The default gives p(was)=0.76, p(were)=0.05."""
    targets: tuple[str, ...] = (" was", " were")
    """Tokens whose trajectories are plotted and summarised (each must be in `tokens`)."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = []
        if len(self.tokens) != len(self.counts):
            out.append(
                f"counts: {len(self.counts)} counts for {len(self.tokens)} tokens; one per token"
            )
        if len(set(self.tokens)) != len(self.tokens):
            out.append("tokens: must be distinct")
        if not self.tokens:
            out.append("tokens: list at least one continuation")
        out += [
            f"counts[{i}]: must be a finite number >= 0, got {c!r}"
            for i, c in enumerate(self.counts)
            if not (math.isfinite(c) and c >= 0)
        ]
        if self.counts and all(math.isfinite(c) for c in self.counts) and sum(self.counts) <= 0:
            out.append("counts: the total N_x must be > 0 (the context must occur in the corpus)")
        if not self.targets:
            out.append("targets: list at least one token to track")
        if len(set(self.targets)) != len(self.targets):
            out.append("targets: must be distinct")
        out += [
            f"targets: {t!r} is not one of the tokens" for t in self.targets if t not in self.tokens
        ]
        return out


@dataclass(frozen=True)
class ErrorSpec:
    """The per-generation errors α_i[n] (Sec. 2.1.2) fed to the recurrences."""

    kind: ErrorKind = "iid"
    """`constant` α[n] = scale·N_x; `iid` random Exponential noise with that mean; `harmonic`
    scale·N_x/n (α → 0 but Σα diverges); `inverse-square` scale·N_x/n² (summable); `bursts`
    scale·N_x/p at random generations with probability p."""
    scale: float = 0.05
    """Mean total error per generation relative to N_x: α[n] ≈ scale·N_x."""
    profile: Literal["uniform", "random"] = "uniform"
    """How α[n] splits over the tokens: `uniform` (additive smoothing) or a seeded random split
    (errors with a bias). Ignored when `weights` is given."""
    weights: tuple[float, ...] = ()
    """Explicit split of α[n] over the tokens (normalised), one per token; empty: use `profile`."""
    burst_probability: float = 0.1
    """Probability that a generation errs, for `bursts`."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = []
        if not (math.isfinite(self.scale) and self.scale >= 0):
            out.append(f"scale: must be a finite number >= 0, got {self.scale!r}")
        if self.weights and (
            not all(math.isfinite(w) and w >= 0 for w in self.weights) or sum(self.weights) <= 0
        ):
            out.append("weights: must be finite, >= 0, with a positive sum")
        if not (math.isfinite(self.burst_probability) and 0 < self.burst_probability <= 1):
            out.append(f"burst_probability: must be in (0, 1], got {self.burst_probability!r}")
        return out


@dataclass(frozen=True)
class TheoryConfig:
    """A theory experiment: which paradigms and rates, how long, which errors, which context."""

    paradigms: tuple[TheoryParadigm, ...] = ("replace", "accumulate-subsample")
    """Paradigms to run; `accumulate-subsample` runs once per k, `mix` once per lam."""
    k: tuple[float, ...] = (0.1, 1.0, 10.0)
    """Accumulation rates k > 0 for accumulate-subsample, shown side by side."""
    lam: tuple[float, ...] = (0.5,)
    """Real-data shares λ in [0, 1] for mix."""
    generations: int = 40
    """Generations n = 1..G in the trajectories (40 in the paper's experiment)."""
    horizon: int = 10_000
    """Generations for the long-horizon real-data weight N_x/y[n] (>= generations)."""
    band: float = 0.05
    """Half-width of the band around the truth: the summary reports when |p̂_n(v) - p(v)| > band."""
    seed: int = 0
    """Seed of the random error sequences and random profiles."""
    probe: TheoryProbe = field(default_factory=TheoryProbe)
    """The context and its corpus counts."""
    errors: ErrorSpec = field(default_factory=ErrorSpec)
    """The error sequence."""

    def check(self) -> list[str]:
        """Problems the types cannot catch (ranges, cross-field rules), each naming its field."""
        out = []
        if not self.paradigms:
            out.append("paradigms: list at least one of replace, accumulate-subsample, mix")
        if "accumulate-subsample" in self.paradigms and not self.k:
            out.append("k: accumulate-subsample needs at least one rate k")
        for i, k in enumerate(self.k):
            out += check_rate(k, f"k[{i}]")
        if "mix" in self.paradigms and not self.lam:
            out.append("lam: mix needs at least one real-data share")
        for i, v in enumerate(self.lam):
            out += check_share(v, f"lam[{i}]")
        if self.generations < 1:
            out.append(f"generations: must be >= 1, got {self.generations}")
        if self.horizon < self.generations:
            out.append(f"horizon: must be >= generations ({self.generations}), got {self.horizon}")
        if self.horizon > 1_000_000:
            out.append(f"horizon: at most 1,000,000 generations, got {self.horizon}")
        if self.horizon * max(len(self.probe.tokens), 1) > 50_000_000:
            out.append(
                f"horizon: {self.horizon:,} generations × {len(self.probe.tokens)} tokens is too "
                "large to hold in memory; lower the horizon or group rare tokens"
            )
        if not (math.isfinite(self.band) and self.band > 0):
            out.append(f"band: must be > 0, got {self.band!r}")
        if not 0 <= self.seed < 2**63:  # what every random generator downstream takes
            out.append(f"seed: must be in [0, 2^63), got {self.seed}")
        n_x = sum(c for c in self.probe.counts if math.isfinite(c))
        if math.isfinite(self.errors.scale) and self.errors.scale * n_x * self.horizon > 1e300:
            out.append(
                f"errors.scale: {self.errors.scale:g}·N_x over {self.horizon:,} generations "
                "overflows; use a smaller scale"
            )
        if self.errors.weights and len(self.errors.weights) != len(self.probe.tokens):
            out.append(
                f"errors.weights: {len(self.errors.weights)} weights for "
                f"{len(self.probe.tokens)} tokens; give one per token or none"
            )
        return out
