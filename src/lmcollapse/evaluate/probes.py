"""Next-token probes (Sec. 3.1.3, Figure 2): p̂_n(v|x) for a context x, next to the corpus truth
N_{x;v}/N_x and the minimal error α* of Remark B.1 that explains p̂_n given the counts.

The model sees the context's tokens alone (no start token), as the paper probes "the same input
x" in every generation. The full next-token distribution is computed in float64 (so every entry
is > 0, as Sec. 2.1.2 assumes) and `lmcollapse.theory.decompose` gives α*_x and α*_{x;v}.
"""

from __future__ import annotations

import numpy as np

from lmcollapse import theory
from lmcollapse.data.stats import ContinuationCounter
from lmcollapse.data.tokenizer import Tok, single_token
from lmcollapse.errors import InvalidInput
from lmcollapse.models.base import LanguageModel
from lmcollapse.results import NextToken, ProbeResult


def probe(
    model: LanguageModel,
    tok: Tok,
    context: str,
    next_texts: list[str] | tuple[str, ...],
    truth: ContinuationCounter | None = None,
    top_k: int = 10,
    distribution: np.ndarray | None = None,
) -> ProbeResult:
    """One probe: p̂(v|x) for each v, the truth N_{x;v}/N_x and α* when the counts are given
    (`distribution`: p̂(·|x) when the caller already has it)."""
    ids = tok.encode(context)
    targets = {v: single_token(tok, v, "probe token") for v in next_texts}
    p = model.next_token_distributions([ids])[0] if distribution is None else distribution
    if tok.vocab_size > p.size:
        raise InvalidInput(
            f"the tokenizer has {tok.vocab_size} ids but the model only {p.size}: "
            "the model does not fit the tokenizer"
        )
    out = ProbeResult(
        context,
        tok.token_strings(ids),
        {v: NextToken(i, float(p[i])) for v, i in targets.items()},
        [
            {"token": tok.token_strings([int(i)])[0], "id": int(i), "p_hat": float(p[i])}
            for i in np.argsort(-p, kind="stable")[:top_k]
        ],
    )
    if truth is not None:
        if list(truth.context) != ids:
            raise InvalidInput("the truth counts were made for another context")
        counts = np.zeros(p.size)
        counts[: truth.counts.size] = truth.counts
        out.N_x = int(truth.n_x)
        for v, i in targets.items():
            out.next[v].count = int(counts[i])
            out.next[v].truth = float(counts[i] / truth.n_x) if truth.n_x else None
        if truth.n_x:
            alpha_x, alpha_i = theory.decompose(p / p.sum(), counts)
            out.alpha_x = alpha_x
            out.alpha_x_relative = alpha_x / truth.n_x  # α* in units of N_x
            for v, i in targets.items():
                out.next[v].alpha = float(alpha_i[i])
    return out


def truth_probe(
    tok: Tok, context: str, next_texts: list[str] | tuple[str, ...], truth: ContinuationCounter
) -> ProbeResult:
    """The probe of the corpus itself (generation 0's row): p̂ = the truth N_{x;v}/N_x, α* = 0."""
    nxt = {}
    for v in next_texts:
        i = single_token(tok, v, "probe token")
        c = int(truth.counts[i])
        share = c / truth.n_x if truth.n_x else None
        nxt[v] = NextToken(i, share, c, share, 0.0)
    ids = list(truth.context)
    return ProbeResult(context, tok.token_strings(ids), nxt, None, truth.n_x, 0.0, 0.0)
