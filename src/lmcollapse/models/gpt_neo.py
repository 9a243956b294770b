"""A fast GPT-Neo whose weights are a standard Hugging Face GPT-Neo checkpoint.

Same architecture as `transformers.GPTNeoForCausalLM` (Appendix C.2): learned positions, pre-norm
blocks, attention without 1/sqrt(d) scaling, layers alternating global and local (a band of
`window_size` tokens, the current one included) attention, gelu_new, tied input/output embeddings.
Module and parameter names mirror the Hugging Face ones, so `state_dict()` keys are the
checkpoint's keys and `save_pretrained` writes config.json + model.safetensors that
`AutoModelForCausalLM.from_pretrained` loads.

What makes it fast:
- attention through `torch.nn.functional.scaled_dot_product_attention` (scale=1.0, causal or a
  banded boolean mask), never a materialised float mask per layer;
- a static key/value cache for sampling (`KVCache`), written in place, no concatenation;
- `loss()` fuses the output projection with cross-entropy in chunks of tokens and computes its
  gradients in the forward pass, so the (tokens × vocabulary) logits never exist in full — the
  largest cost of a small model with a 50k vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmcollapse.artifacts import atomic_dir
from lmcollapse.errors import InvalidInput
from lmcollapse.models.torch_lm import TorchFamily, TorchLM, softmax_into

CE_CHUNK_TOKENS = 512  # tokens per chunk of the fused output projection + cross-entropy


@dataclass(frozen=True)
class NeoShape:
    """The architecture numbers that matter here, read from a transformers.GPTNeoConfig."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    max_positions: int
    window_size: int
    attention_layers: tuple[str, ...]
    intermediate_size: int
    layer_norm_epsilon: float
    embed_dropout: float
    attention_dropout: float
    resid_dropout: float
    tied: bool

    @classmethod
    def from_hf(cls, config: Any) -> NeoShape:
        """The shape of a GPT-Neo config, checked: an InvalidInput names what cannot work."""
        if config.activation_function != "gelu_new":
            raise InvalidInput(
                f"GPT-Neo activation {config.activation_function!r} is not supported by the fast "
                "engine (gelu_new only): use model.family=hf"
            )
        layers = tuple(config.attention_layers)
        unknown = sorted(set(layers) - {"global", "local"})
        if unknown:
            raise InvalidInput(f"attention layer types must be global or local, got {unknown}")
        if config.vocab_size < 1 or config.hidden_size < 1 or config.num_heads < 1:
            raise InvalidInput("vocabulary, hidden size and heads must be >= 1")
        if config.hidden_size % config.num_heads:
            raise InvalidInput(
                f"hidden size {config.hidden_size} is not divisible by {config.num_heads} heads"
            )
        if len(layers) != config.num_layers:
            raise InvalidInput(
                f"{len(layers)} attention layer types for {config.num_layers} layers"
            )
        return cls(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            max_positions=config.max_position_embeddings,
            window_size=config.window_size,
            attention_layers=tuple(config.attention_layers),
            intermediate_size=config.intermediate_size or 4 * config.hidden_size,
            layer_norm_epsilon=config.layer_norm_epsilon,
            embed_dropout=float(config.embed_dropout),
            attention_dropout=float(config.attention_dropout),
            resid_dropout=float(config.resid_dropout),
            tied=bool(getattr(config, "tie_word_embeddings", True)),
        )


def hf_config(
    *,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    max_positions: int,
    window_size: int,
    attention_pattern: tuple[str, ...] = ("global", "local"),
    eos_id: int = 0,
) -> Any:
    """A transformers.GPTNeoConfig like TinyStories-1M/33M's (no dropout, gelu_new, tied)."""
    from transformers import GPTNeoConfig

    if num_layers % len(attention_pattern):
        raise InvalidInput(
            f"attention pattern of {len(attention_pattern)} must divide {num_layers} layers"
        )
    return GPTNeoConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_position_embeddings=max_positions,
        window_size=window_size,
        attention_types=[[list(attention_pattern), num_layers // len(attention_pattern)]],
        intermediate_size=None,
        activation_function="gelu_new",
        embed_dropout=0.0,
        attention_dropout=0.0,
        resid_dropout=0.0,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=True,
        use_cache=True,
    )


# ----------------------------------------------------------------------------------------------
# Modules (names mirror transformers' GPT-Neo so state_dict keys match the checkpoint format)


class SelfAttention(nn.Module):
    """q/k/v/out projections and unscaled causal attention, global or banded."""

    def __init__(self, shape: NeoShape, local: bool) -> None:
        super().__init__()
        h = shape.hidden_size
        self.num_heads, self.head_dim = shape.num_heads, h // shape.num_heads
        self.window = shape.window_size if local else None
        self.dropout = shape.attention_dropout
        self.k_proj = nn.Linear(h, h, bias=False)
        self.v_proj = nn.Linear(h, h, bias=False)
        self.q_proj = nn.Linear(h, h, bias=False)
        self.out_proj = nn.Linear(h, h, bias=True)
        self.resid_dropout = nn.Dropout(shape.resid_dropout)

    def _qkv_weight(self) -> Tensor:
        """q, k and v projections as one (3H, H) matrix: one matrix product instead of three.
        Without gradients (sampling, evaluation) the concatenation is cached until the weights
        change, so a decoding step does not copy them."""
        parts = (self.q_proj.weight, self.k_proj.weight, self.v_proj.weight)
        if torch.is_grad_enabled():
            return torch.cat(parts)
        key = tuple((p.data_ptr(), p._version) for p in parts)
        if getattr(self, "_qkv_key", None) != key:
            self._qkv_cached, self._qkv_key = torch.cat(parts), key
        return self._qkv_cached

    def _heads(self, x: Tensor) -> Tensor:  # (B, T, H) -> (B, nh, T, hd)
        b, t, _ = x.shape
        return x.reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, cache: LayerCache | None = None) -> Tensor:
        """x (B, T, H). Without a cache: causal over the T tokens. With a cache: the T new tokens
        follow the cached ones (positions cache.length ...), and are appended to it."""
        q, k, v = (self._heads(z) for z in F.linear(x, self._qkv_weight()).chunk(3, dim=-1))
        t = x.shape[1]
        p = self.dropout if self.training else 0.0
        if cache is None:
            if self.window is None or t <= self.window:
                out = F.scaled_dot_product_attention(
                    q, k, v, is_causal=True, scale=1.0, dropout_p=p
                )
            else:
                out = F.scaled_dot_product_attention(
                    q,
                    k,
                    v,
                    attn_mask=band_mask(t, t, self.window, x.device),
                    scale=1.0,
                    dropout_p=p,
                )
        else:
            start = cache.length
            k_all, v_all = cache.append(k, v)
            mask = None
            if t > 1 or (self.window is not None and start + t > self.window):
                mask = band_mask(t, start + t, self.window, x.device)
            out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, scale=1.0)
        b = x.shape[0]
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.resid_dropout(self.out_proj(out))


def band_mask(q_len: int, k_len: int, window: int | None, device: torch.device) -> Tensor:
    """Boolean (q_len, k_len): query i (the last q_len of k_len positions) sees key j iff
    j <= i and, for a local layer, j > i - window. True = attend."""
    i = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    keep = j <= i
    if window is not None:
        keep &= j > i - window
    return keep


class _AttnWrapper(nn.Module):
    """transformers nests the attention one level deeper (block.attn.attention)."""

    def __init__(self, shape: NeoShape, local: bool) -> None:
        super().__init__()
        self.attention = SelfAttention(shape, local)


class MLP(nn.Module):
    """c_fc, gelu_new (the tanh approximation), c_proj."""

    def __init__(self, shape: NeoShape) -> None:
        super().__init__()
        self.c_fc = nn.Linear(shape.hidden_size, shape.intermediate_size)
        self.c_proj = nn.Linear(shape.intermediate_size, shape.hidden_size)
        self.dropout = nn.Dropout(shape.resid_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))  # gelu_new


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, shape: NeoShape, local: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_epsilon)
        self.attn = _AttnWrapper(shape, local)
        self.ln_2 = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_epsilon)
        self.mlp = MLP(shape)

    def forward(self, x: Tensor, cache: LayerCache | None = None) -> Tensor:
        x = x + self.attn.attention(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, shape: NeoShape) -> None:
        super().__init__()
        self.wte = nn.Embedding(shape.vocab_size, shape.hidden_size)
        self.wpe = nn.Embedding(shape.max_positions, shape.hidden_size)
        self.drop = nn.Dropout(shape.embed_dropout)
        self.h = nn.ModuleList(Block(shape, kind == "local") for kind in shape.attention_layers)
        self.ln_f = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_epsilon)


class LayerCache:
    """One layer's keys and values, preallocated (B, nh, capacity, hd), filled in place."""

    def __init__(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v, self.length = k, v, 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write new keys/values (B, nh, t, hd) after the cached ones; return all of them."""
        t = k.shape[2]
        end = self.length + t
        if end > self.k.shape[2]:
            raise RuntimeError(f"KV cache overflow: {end} > {self.k.shape[2]} positions")
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def keep_rows(self, keep: Tensor) -> None:
        """Drop the batch rows where `keep` is False (sequences that finished)."""
        self.k, self.v = self.k[keep], self.v[keep]

    def select_rows(self, index: Tensor) -> None:
        """Row i becomes old row index[i] (a (B',) long tensor): beams reordered, duplicated or
        dropped; the capacity and the filled length stay."""
        self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


class KVCache:
    """Static caches for every layer, for `capacity` positions of a batch."""

    def __init__(self, model: GPTNeo, batch: int, capacity: int) -> None:
        s = model.shape
        hd = s.hidden_size // s.num_heads
        p = next(model.parameters())
        self.layers = [
            LayerCache(
                torch.empty(batch, s.num_heads, capacity, hd, dtype=p.dtype, device=p.device),
                torch.empty(batch, s.num_heads, capacity, hd, dtype=p.dtype, device=p.device),
            )
            for _ in range(s.num_layers)
        ]

    @property
    def length(self) -> int:
        """Positions filled so far."""
        return self.layers[0].length

    def keep_rows(self, keep: Tensor) -> None:
        """Drop finished sequences from every layer."""
        for layer in self.layers:
            layer.keep_rows(keep)

    def select_rows(self, index: Tensor) -> None:
        """Reorder/duplicate the batch rows of every layer by `index` (B',) long, on the cache's
        device: row i becomes old row index[i] (beam search: each beam takes its parent's keys
        and values; a prompt's cache repeated for its beams)."""
        for layer in self.layers:
            layer.select_rows(index)


class GPTNeo(TorchLM):
    """GPT-Neo for causal language modelling; state_dict keys as in transformers."""

    family = "gpt-neo"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config  # a transformers.GPTNeoConfig: what config.json holds
        self.shape = NeoShape.from_hf(config)
        self.transformer = _Transformer(self.shape)
        self.lm_head = nn.Linear(self.shape.hidden_size, self.shape.vocab_size, bias=False)
        if self.shape.tied:  # GPT-Neo ties them (a checkpoint may say otherwise)
            self.lm_head.weight = self.transformer.wte.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """transformers' init: N(0, initializer_range) weights and embeddings, zero biases,
        LayerNorm (1, 0). Called at construction: every generation starts from a fresh init."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        """A static key/value cache for sampling `batch` sequences of up to `capacity` positions."""
        return KVCache(self, batch, capacity)

    # --- forward passes ------------------------------------------------------------------------

    def hidden(
        self, input_ids: Tensor, cache: KVCache | None = None, position_offset: int = 0
    ) -> Tensor:
        """Final hidden states (B, T, H) of input_ids (B, T); positions start at the cache length
        (or position_offset without a cache)."""
        t = input_ids.shape[1]
        start = cache.length if cache is not None else position_offset
        if start + t > self.shape.max_positions:
            raise InvalidInput(
                f"sequence of {start + t} tokens exceeds the model's "
                f"{self.shape.max_positions} positions"
            )
        tr = self.transformer
        pos = torch.arange(start, start + t, device=input_ids.device)
        x = tr.drop(tr.wte(input_ids) + tr.wpe(pos))
        for i, block in enumerate(tr.h):
            x = block(x, None if cache is None else cache.layers[i])
        return tr.ln_f(x)

    def forward(
        self, input_ids: Tensor, targets: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """Logits (B, T, V); or, given targets (B, T), their mean next-token cross-entropy
        without materialising the logits (FusedLinearCrossEntropy; -100 = ignore). The loss
        goes through forward() so that DistributedDataParallel sees it."""
        h = self.hidden(input_ids, cache)
        if targets is None:
            return self.lm_head(h)
        low = autocast_dtype(h.device.type)
        if low is not None:  # CUDA's autocast leaves ln_f in fp32: the output layer, most of a
            h = h.to(low)  # small model's FLOPs, then runs in its precision, as nn.Linear would
        return FusedLinearCrossEntropy.apply(
            h.reshape(-1, h.shape[-1]),
            self.lm_head.weight,
            targets.reshape(-1),
            -100,
            torch.is_grad_enabled(),
        )

    def token_logprobs(
        self, input_ids: Tensor, targets: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        """log p(targets | prefix) per position, (B, T), float32; positions outside `mask`
        (e.g. padding) are 0 and cost nothing in the output projection."""
        h = self.hidden(input_ids)
        flat_h, flat_t = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
        rows = (
            torch.arange(flat_t.numel(), device=h.device)
            if mask is None
            else mask.reshape(-1).nonzero()[:, 0]
        )
        out = torch.zeros(flat_t.shape, dtype=torch.float32, device=h.device)
        w = self.lm_head.weight.float()
        logits_buf, logp_buf = _chunk_buffers(rows.numel(), w.shape[0], h.device)
        for s in range(0, rows.numel(), CE_CHUNK_TOKENS):
            r = rows[s : s + CE_CHUNK_TOKENS]
            logits, logp = logits_buf[: r.numel()], logp_buf[: r.numel()]
            torch.mm(flat_h[r].float(), w.T, out=logits)
            softmax_into(logits, logp, log=True)
            out[r] = logp.gather(1, flat_t[r, None])[:, 0]
        return out.view(targets.shape)

    def next_token_logits(
        self, input_ids: Tensor, cache: KVCache | None = None, out: Tensor | None = None
    ) -> Tensor:
        """Logits (B, V) of the token after input_ids (B, T), written into `out` if given (a
        buffer reused across sampling steps)."""
        h = self.hidden(input_ids, cache)[:, -1]
        w = self.lm_head.weight
        if out is None:
            return h @ w.T
        return torch.mm(h, w.T, out=out[: h.shape[0]])

    # --- Hugging Face checkpoint format --------------------------------------------------------

    def save_pretrained(self, path: str | Path) -> Path:
        """config.json + model.safetensors (tied lm_head omitted, as transformers does)."""
        from safetensors.torch import save_file

        state = {
            k: v.detach().contiguous().cpu()
            for k, v in self.state_dict().items()
            if k != "lm_head.weight" or not self.shape.tied
        }
        with atomic_dir(path) as tmp:
            self.config.architectures = ["GPTNeoForCausalLM"]
            (tmp / "config.json").write_text(self.config.to_json_string(), encoding="utf-8")
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> GPTNeo:
        """Load any Hugging Face GPT-Neo checkpoint directory (safetensors or pytorch_model.bin)."""
        from transformers import GPTNeoConfig

        p = Path(path)
        if not (p / "config.json").is_file():
            raise InvalidInput(f"{p} has no config.json: it is not a Hugging Face model directory")
        config = GPTNeoConfig.from_pretrained(str(p))
        model = cls(config)
        if (p / "model.safetensors").is_file():
            from safetensors.torch import load_file

            state = load_file(str(p / "model.safetensors"))
        else:
            from transformers import GPTNeoForCausalLM

            state = GPTNeoForCausalLM.from_pretrained(str(p)).state_dict()
        state = {
            k: v
            for k, v in state.items()
            if not k.endswith((".attn.attention.bias", ".attn.attention.masked_bias"))
        }
        if model.shape.tied:
            state.setdefault("lm_head.weight", state["transformer.wte.weight"])
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InvalidInput(
                f"{p}: checkpoint does not match GPT-Neo (missing {missing}, "
                f"unexpected {unexpected})"
            )
        return model

    def describe(self) -> str:
        return describe(self)


def _chunk_buffers(rows: int, vocab: int, device: torch.device) -> tuple[Tensor, Tensor]:
    # Two (chunk, V) float32 buffers reused by every chunk of a call: at V = 50k a chunk is
    # ~100 MB, and a fresh allocation per chunk means fresh pages (mmap + zeroing) every time.
    shape = (min(rows, CE_CHUNK_TOKENS), vocab)
    return (
        torch.empty(shape, dtype=torch.float32, device=device),
        torch.empty(shape, dtype=torch.float32, device=device),
    )


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast casts matrix products to on this device type, None when it is off."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except TypeError:  # torch < 2.4: the device-less forms (CUDA) and the CPU ones
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
    return None


class FusedLinearCrossEntropy(torch.autograd.Function):
    """mean_t CE(h_t W^T, y_t) with its gradients computed in the forward pass, chunk by chunk.

    For each chunk of tokens: logits = h W^T (in float32, into two reused buffers; in the
    autocast dtype under autocast), p = softmax(logits) in float32, loss = -log p(y) (from the
    logits' logsumexp for a target whose p underflows), then d/dlogits = (p - onehot)/N,
    dh = dlogits W, dW += dlogits^T h. Only dh (N, H) and dW (V, H), in float32, are kept for
    backward, which scales them by the incoming gradient — and without gradients (evaluation)
    they are not computed at all. Exact, not an approximation: F.cross_entropy(h @ W.T, y) up
    to float rounding.
    """

    @staticmethod
    def forward(
        ctx: Any, h: Tensor, weight: Tensor, targets: Tensor, ignore_index: int, grad_enabled: bool
    ) -> Tensor:
        valid = targets != ignore_index
        n = int(valid.sum())
        if n == 0:
            raise InvalidInput("no target tokens in the batch")
        bad = valid & ((targets < 0) | (targets >= weight.shape[0]))
        if bool(bad.any()):
            raise InvalidInput(
                f"target ids must be in [0, {weight.shape[0]}) or {ignore_index} (ignored), got "
                f"{targets[bad][0].item()}"
            )
        need_grad = grad_enabled and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        low = h.dtype in (torch.float16, torch.bfloat16)  # under autocast (forward casts h)
        w = weight.to(h.dtype) if low else weight.float()
        grad_h = torch.empty(h.shape, dtype=torch.float32, device=h.device) if need_grad else None
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if need_grad else None
        )
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        if not low:
            logits_buf, probs_buf = _chunk_buffers(h.shape[0], w.shape[0], h.device)
        for s in range(0, h.shape[0], CE_CHUNK_TOKENS):
            hc = h[s : s + CE_CHUNK_TOKENS] if low else h[s : s + CE_CHUNK_TOKENS].float()
            c = hc.shape[0]
            tc = targets[s : s + CE_CHUNK_TOKENS].clamp_min(0)[:, None]
            weight_c = (valid[s : s + CE_CHUNK_TOKENS].float() / n)[:, None]  # 1/N, or 0 if ignored
            if low:
                logits = hc @ w.T
                p = torch.softmax(logits, dim=-1, dtype=torch.float32)
            else:
                logits, p = logits_buf[:c], probs_buf[:c]
                torch.mm(hc, w.T, out=logits)
                softmax_into(logits, p)
            p_t = p.gather(1, tc)
            loss = -torch.log(p_t)
            tiny = p_t[:, 0] < 1e-30  # underflow: that row's loss from its logits instead
            if bool(tiny.any()):
                rows = logits[tiny].float()
                loss[tiny] = torch.logsumexp(rows, -1, keepdim=True) - rows.gather(1, tc[tiny])
            total += (loss * weight_c).sum(dtype=torch.float64)
            if need_grad:
                p.mul_(weight_c)  # softmax / N
                p.scatter_add_(1, tc, -weight_c)  # - onehot / N
                g = p.to(w.dtype)
                grad_h[s : s + c] = g @ w
                grad_w.addmm_(g.T.float() if low else g.T, hc.float())
        if need_grad:
            # dh stays float32 until the incoming gradient (the loss scale, under fp16) has
            # multiplied it: (p - onehot)/N is ~1e-6 per element, below fp16's normal range
            ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
            ctx.h_dtype = h.dtype
        return total.float()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_out).to(ctx.h_dtype), grad_w * grad_out, None, None, None


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def describe(model: GPTNeo) -> str:
    """One line: layers, width, heads, vocabulary, parameters."""
    s = model.shape
    return (
        f"GPT-Neo {s.num_layers} layers × {s.hidden_size} (heads {s.num_heads}, window "
        f"{s.window_size}, positions {s.max_positions}), vocabulary {s.vocab_size}, "
        f"{count_parameters(model) / 1e6:.2f}M parameters"
    )


class GPTNeoFamily(TorchFamily):
    """The paper's architecture in the fast engine; loads any gelu_new GPT-Neo checkpoint."""

    name = "gpt-neo"
    model_types = ("gpt_neo",)

    def claims(self, meta: dict[str, Any]) -> bool:
        return (
            meta.get("model_type") == "gpt_neo"
            and meta.get("activation_function", "gelu_new") == "gelu_new"
        )

    def check(self, cfg: Any, vocab_size: int) -> list[str]:
        try:
            NeoShape.from_hf(self._config(cfg, vocab_size, 0))
        except InvalidInput as exc:
            return [str(exc)]
        return []

    def build(self, cfg: Any, vocab_size: int, eos_id: int) -> GPTNeo:
        return GPTNeo(self._config(cfg, vocab_size, eos_id))

    def load(self, path: Path) -> GPTNeo:
        return GPTNeo.from_pretrained(path)

    @staticmethod
    def _config(cfg: Any, vocab_size: int, eos_id: int) -> Any:
        return hf_config(
            vocab_size=vocab_size,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            num_heads=cfg.num_heads,
            max_positions=cfg.max_position_embeddings,
            window_size=cfg.window_size,
            attention_pattern=tuple(cfg.attention_pattern),
            eos_id=eos_id,
        )
