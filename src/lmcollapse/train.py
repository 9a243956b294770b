"""Training one generation from a fresh random init (Appendix C.1.2): the loop only.

    result = train(model, TrainingSet.whole(d0), cfg.training, seed=0, holdout=holdout)

AdamW (lr 5e-4, betas (0.9, 0.95), weight decay 0.1 on weights but not on biases and LayerNorm,
as the Hugging Face Trainer does), a constant learning rate by default, an effective batch of
`batch_size` sequences reached by gradient accumulation over micro-batches on every process,
stories packed into blocks of `context_length` tokens with the end-of-text token trained as a
target (except the separator after an unfinished generated story, which is no target). fp16
autocast with a gradient scaler on CUDA, fp32 on CPU (fp16 or bf16 there when asked). Epochs are
fixed, or (early stopping) chosen on the held-out split and returned so later generations reuse
them.

The same function runs unchanged under `accelerate launch --num_processes N`: accelerate wraps
the model in DistributedDataParallel and shards the blocks; process 0 reports progress.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch

from lmcollapse.config import TrainingConfig
from lmcollapse.data.packing import TrainingSet
from lmcollapse.data.store import TokenStore
from lmcollapse.errors import InvalidInput, RunFailed
from lmcollapse.results import TrainResult
from lmcollapse.runtime import make_accelerator


def param_groups(
    model: torch.nn.Module, weight_decay: float, everything: bool = False
) -> list[dict[str, Any]]:
    """Weight decay on matrices and embeddings; none on biases and normalisation weights
    (LayerNorm, RMSNorm, ...: the Hugging Face Trainer's rule) — or, with `everything`, on all
    parameters (Algorithm 1 read literally)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if not everything and (name == "bias" or "norm" in type(module).__name__.lower()):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_lambda(schedule: str, warmup: int, total: int) -> Any:
    """Multiplier of the learning rate at optimizer step s: linear warmup, then the schedule."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        frac = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * frac)) if schedule == "cosine" else 1.0 - frac

    return f


def train(
    model: torch.nn.Module,
    data: TrainingSet,
    cfg: TrainingConfig,
    *,
    seed: int,
    holdout: TokenStore | None = None,
    epochs: int | None = None,
    device: str = "auto",
    progress: bool = True,
    max_steps: int | None = None,
    on_step: Any = None,
) -> TrainResult:
    """Train `model` in place on `data`; returns what happened.

    epochs: overrides cfg.epochs (e.g. the count chosen by early stopping for generation 1).
    With cfg.early_stopping and a holdout, epochs run up to cfg.max_epochs until the held-out loss
    has not improved for cfg.patience epochs; the best weights are kept and best_epoch is set.
    max_steps: stop after this many optimizer steps (benchmarks, smoke tests).
    on_step: called with (optimizer step, the step's mean micro-batch loss) after every step
    (experiment trackers).
    """
    from lmcollapse.runtime import num_processes, progress_bar

    world = num_processes()
    accum = _check(model, data, cfg, world)
    torch.manual_seed(seed)  # dropout, if the architecture has any
    acc = make_accelerator(cfg.precision, device, accum)
    early = _EarlyStopping(cfg.patience) if cfg.early_stopping and holdout is not None else None
    n_epochs = cfg.max_epochs if early else (epochs or cfg.epochs)
    first = _epoch_blocks(data, cfg, seed, 0)
    total_steps = len(first) // cfg.batch_size * n_epochs  # the schedule's horizon
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay, cfg.decay_norms_and_biases),
        lr=cfg.learning_rate,
        betas=cfg.betas,
        foreach=True,
    )
    # Stepped here once per optimizer step (accelerate would step a prepared scheduler once per
    # process per step, running the schedule `processes` times too fast).
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.schedule, cfg.warmup_steps, total_steps)
    )
    model, optimizer = acc.prepare(model, optimizer)
    result = TrainResult(epochs=0, steps=0, tokens=0, seconds=0.0)
    shown = total_steps if max_steps is None else min(max_steps, total_steps)
    step = _Step(acc, model, optimizer, scheduler, cfg.grad_clip, world, max_steps, result)
    step.on_step = on_step
    step.bar = progress_bar(shown, "train", "step", progress and acc.is_main_process)
    for epoch in range(n_epochs):
        blocks = first if epoch == 0 else _epoch_blocks(data, cfg, seed, epoch)
        loader = acc.prepare(
            torch.utils.data.DataLoader(blocks, batch_size=cfg.micro_batch_size, shuffle=False)
        )
        result.epochs = epoch + 1
        result.losses.append(step.epoch(loader))
        if not math.isfinite(result.losses[-1]):
            raise RunFailed(
                f"the training diverged (mean loss {result.losses[-1]} in epoch {epoch + 1}, "
                f"learning rate {cfg.learning_rate:g}): start the run again with another --out and "
                "a lower training.learning_rate, or a training.grad_clip"
            )
        if step.done:
            break
        if early is not None:
            held = acc.unwrap_model(model).perplexity(holdout, context=cfg.context_length).loss
            result.holdout_losses.append(held)
            if early.stop(held, epoch + 1, acc.unwrap_model(model)):
                break
    step.bar.close()
    result.final_lr = float(optimizer.param_groups[0]["lr"])
    result.seconds = time.perf_counter() - step.t0
    if early is not None and early.best_state is not None:
        result.best_epoch = early.best_epoch
        acc.unwrap_model(model).load_state_dict(early.best_state)
    acc.wait_for_everyone()
    return result


def _check(model: Any, data: TrainingSet, cfg: TrainingConfig, world: int) -> int:
    """Micro-batches accumulated per optimizer step; InvalidInput for what cannot train."""
    micro = cfg.micro_batch_size
    if cfg.batch_size % (micro * world):
        raise InvalidInput(
            f"training.batch_size={cfg.batch_size} is not a multiple of micro_batch_size × "
            f"processes = {micro} × {world}"
        )
    shape = model.shape
    if data.vocab_size > shape.vocab_size:
        raise InvalidInput(
            f"the data's vocabulary ({data.vocab_size}) does not fit the model's "
            f"({shape.vocab_size}): set model.vocab_size to at least the tokenizer's"
        )
    if cfg.context_length > shape.max_positions:
        raise InvalidInput(
            f"training.context_length={cfg.context_length} exceeds the model's "
            f"{shape.max_positions} positions"
        )
    return cfg.batch_size // (micro * world)


def _epoch_blocks(
    data: TrainingSet, cfg: TrainingConfig, seed: int, epoch: int
) -> torch.utils.data.Dataset:
    """One epoch's shuffled blocks, whole optimizer steps only: every step averages exactly
    batch_size blocks, split evenly over the processes (the leftover blocks, fewer than one
    batch, wait for the next epoch's shuffle). A partial step would weigh its blocks differently."""
    blocks = data.blocks(cfg.context_length, seed=seed + epoch, eos_targets=cfg.eos_target)
    usable = len(blocks) // cfg.batch_size * cfg.batch_size
    if usable == 0:
        raise InvalidInput(
            f"the training set makes {len(blocks)} blocks of {cfg.context_length} tokens, "
            f"fewer than one batch of {cfg.batch_size}: lower training.batch_size or "
            "training.context_length"
        )
    return torch.utils.data.Subset(blocks, range(usable))


class _Step:
    """The optimizer steps of one training run (gradient accumulation, clipping, schedule)."""

    def __init__(
        self,
        acc: Any,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        grad_clip: float | None,
        world: int,
        max_steps: int | None,
        result: TrainResult,
    ) -> None:
        self.acc, self.model, self.optimizer, self.scheduler = acc, model, optimizer, scheduler
        self.grad_clip, self.world, self.max_steps, self.result = (
            grad_clip,
            world,
            max_steps,
            result,
        )
        self.bar: Any = None
        self.on_step: Any = None
        self.t0 = time.perf_counter()

    @property
    def done(self) -> bool:
        """max_steps reached."""
        return self.max_steps is not None and self.result.steps >= self.max_steps

    def epoch(self, loader: Any) -> float:
        """One pass over the loader; the mean training loss of its micro-batches."""
        acc, model, result = self.acc, self.model, self.result
        model.train()
        running = torch.zeros(())
        count = 0
        step_loss, step_count = torch.zeros(()), 0
        for batch in loader:
            with acc.accumulate(model):
                loss = model(batch[:, 0], batch[:, 1])  # inputs, targets (IGNORE: none)
                acc.backward(loss)
                if self.grad_clip is not None and acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), self.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            running += loss.detach().cpu()
            count += 1
            if self.on_step is not None:
                step_loss += loss.detach().cpu()
                step_count += 1
            result.tokens += batch[:, 1].numel() * self.world
            if acc.sync_gradients:
                self.scheduler.step()
                result.steps += 1
                if self.on_step is not None:
                    self.on_step(result.steps, float(step_loss) / step_count)
                    step_loss, step_count = torch.zeros(()), 0
                self.bar.update(1)
                elapsed = time.perf_counter() - self.t0
                self.bar.set_postfix(
                    loss=f"{float(running) / count:.3f}", tok_s=f"{result.tokens / elapsed:,.0f}"
                )
                if self.done:
                    break
        return float(running) / max(count, 1)


class _EarlyStopping:
    """Keeps the best weights by held-out loss; says stop after `patience` epochs without one."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.stale = patience, math.inf, 0
        self.best_state: dict[str, Any] | None = None
        self.best_epoch: int | None = None

    def stop(self, loss: float, epoch: int, model: Any) -> bool:
        if loss < self.best - 1e-6:
            self.best, self.stale, self.best_epoch = loss, 0, epoch
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.stale += 1
        return self.stale >= self.patience
