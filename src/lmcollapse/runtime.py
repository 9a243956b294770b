"""Devices, precision, seeding and processes: the one place that knows about them.

On a CPU everything here is a no-op or fp32 unless asked otherwise; on CUDA `precision="auto"`
means fp16 autocast with a gradient scaler, as in the paper. `fp16` and `bf16` also run on a CPU
(torch autocasts both there), so a config's mixed-precision behaviour — an fp16 overflow, the
scaler backing off — shows on a laptop before a GPU run finds it in hour 5. Multi-process runs
(`accelerate launch --num_processes N`) are Hugging Face accelerate's: `make_accelerator` builds
the Accelerator, `process_index` and `num_processes` say where this process stands; with one
process nothing is distributed.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from lmcollapse.errors import InvalidInput, RunFailed

T = TypeVar("T")


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cpu`, `cuda`, `cuda:N` as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInput(
            f"device {name!r} asked for, but CUDA is not available: use run.device=cpu"
        )
    return device


def mixed_precision(precision: str, device: torch.device) -> str:
    """accelerate's mixed_precision for a config value (on a CPU fp32 unless asked otherwise)."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "no"
    if precision == "fp16" and device.type != "cuda":
        if device.type != "cpu":
            raise InvalidInput(f"fp16 needs CUDA or a CPU, not {device.type}: use fp32 or bf16")
        if not cpu_fp16_supported():
            raise InvalidInput(
                f"fp16 on a CPU needs torch >= 2.4 (CPU autocast and GradScaler; this is "
                f"{torch.__version__}): use training.precision=fp32 or bf16"
            )
    return {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}[precision]


def cpu_fp16_supported() -> bool:
    """Whether this torch autocasts to fp16 on a CPU and has a CPU GradScaler (torch >= 2.4)."""
    try:
        torch.amp.GradScaler("cpu")
        return bool(torch.amp.is_autocast_available("cpu"))
    except (AttributeError, TypeError, RuntimeError):
        return False


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices): same seed, same results on CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy global state some libraries still use)
    torch.manual_seed(seed)


def make_accelerator(precision: str = "auto", device: str = "auto", grad_accum: int = 1) -> Any:
    """An accelerate.Accelerator for this process (DDP over gloo/nccl when there are several)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    dev = resolve_device(device)
    wanted = mixed_precision(precision, dev)
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision", wanted) != wanted:
        # accelerate keeps one precision per process; a later training with another (the Python
        # API, a test session) starts its state again. The process group (PartialState) stays;
        # an earlier Accelerator is done with by then (one training at a time per process).
        AcceleratorState._reset_state()
    acc = Accelerator(
        cpu=dev.type == "cpu",
        mixed_precision=wanted,
        gradient_accumulation_steps=grad_accum,
    )
    if acc.mixed_precision == "fp16" and dev.type == "cpu" and acc.scaler is None:
        # accelerate turns fp16 off on a CPU without a word; torch does support it there. Its own
        # path then runs as on CUDA: autocast in the prepared forward, the scaler in backward(),
        # clip_grad_norm_ (unscaling first) and the prepared optimizer's step (skipped on inf).
        acc.native_amp = True
        acc.scaler = torch.amp.GradScaler("cpu")
    return acc


_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return default


def process_index() -> int:
    """This process's rank, as torchrun/accelerate or MPI set it (0 without a launcher)."""
    return _env_int(_RANK_VARS, 0)


def num_processes() -> int:
    """How many processes the launcher started (1 without a launcher)."""
    return _env_int(_SIZE_VARS, 1)


def distributed_state(device: str | torch.device = "auto") -> Any:
    """accelerate's PartialState for this launch (barriers, main process), CPU or GPU."""
    from accelerate import PartialState

    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return PartialState(cpu=dev.type == "cpu")


def main_first(state: Any, fn: Callable[[], T]) -> T | None:
    """Run fn on the main process while the others wait; its value reaches every process.
    What it raised is raised on every process (InvalidInput as itself, anything else as
    RunFailed, by its message), so no process is left waiting at a barrier the main one never
    reaches."""
    value: T | None = None
    error: BaseException | None = None
    if state.is_main_process:
        try:
            value = fn()
        except BaseException as exc:
            error = exc
    if state.num_processes > 1:
        import torch.distributed as dist

        box = [(value, None if error is None else (isinstance(error, InvalidInput), str(error)))]
        dist.broadcast_object_list(box, src=0)
        value, failed = box[0]
        if not state.is_main_process and failed is not None:
            bad_input, message = failed
            raise (InvalidInput if bad_input else RunFailed)(message)
    if error is not None:
        raise error
    return value


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's `obj` (a list of one without a launcher)."""
    if num_processes() == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * num_processes()
    dist.all_gather_object(out, obj)
    return out


log = logging.getLogger("lmcollapse")


def log_to(path: Path) -> logging.Handler:
    """Also log lmcollapse's messages to a file (a run's run.log); remove the handler after."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def say(message: str, progress: bool = True) -> None:
    """Log a message, and print it above the progress bars when they are on."""
    log.info(message)
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message)


def progress_bar(
    total: int | None, desc: str, unit: str, enabled: bool, *, initial: int = 0, leave: bool = False
) -> Any:
    """A tqdm bar for one phase (train, sample; the run's generations with leave=True), off on
    non-main processes and when asked."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not enabled,
        dynamic_ncols=True,
        leave=leave,
    )


def describe_hardware() -> dict[str, Any]:
    """What the run ran on, for manifests and reports."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info
