"""Experiment trackers (run.trackers) through accelerate's: TensorBoard and Weights & Biases.

    trackers = Trackers.open(cfg, root, steps_before={1: 0, 2: 40, 3: 80}, first=3, new=False)
    on_step = trackers.step_logger(3)          # (step, loss) of generation 3's optimizer steps
    trackers.generation(3, metrics_row, steps=40)   # its metrics.csv row, as it is recorded

Two series: every generation's numeric metrics (the metrics.csv row, x = generation) and every
optimizer step's training loss (x = optimizer steps since generation 1, counted from the
recorded generations, so a resumed run continues the same axis). TensorBoard writes them as two
runs under RUN/trackers/tensorboard/ ("generations" and "steps"); a resumed run purges what the
interrupted attempt logged past the last recorded generation. W&B runs offline (files under
RUN/trackers/wandb, `wandb sync` uploads them) unless WANDB_MODE says otherwise (online: a
configured account and a network); it never asks for an account. Its run id is the run
directory's and the run's creation time's, so a resumed run continues it and a new run in the
same place starts another. The run's resolved config goes to each tracker
once, when the run is new.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmcollapse.errors import InvalidInput
from lmcollapse.rundir import RunLayout

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_trackers(names: tuple[str, ...]) -> None:
    """InvalidInput when a tracker's package is missing (before a run writes anything)."""
    for name in names:
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise InvalidInput(
                f"run.trackers {name} needs the {PACKAGES[name]} package: pip install "
                f"'lmcollapse[trackers]' (or {PACKAGES[name]}), or drop it from run.trackers"
            )


def wandb_mode() -> str:
    """WANDB_MODE when set, else offline: a run never waits on a network or an account."""
    return os.environ.get("WANDB_MODE") or "offline"


def numeric(row: dict[str, Any], prefix: str) -> dict[str, float]:
    """The finite numbers of a metrics row, keys prefixed (what a tracker can plot)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value) and key != "generation":
            out[f"{prefix}{key}"] = float(value)
    return out


class Trackers:
    """The run's open trackers (accelerate.tracking), main process only."""

    def __init__(self, trackers: dict[str, Any], offsets: dict[int, int]) -> None:
        self.trackers = trackers  # "tensorboard-generations", "tensorboard-steps", "wandb"
        self.offsets = offsets  # generation -> optimizer steps of the generations before it

    @classmethod
    def open(
        cls,
        cfg: Any,
        root: Path,
        steps_before: dict[int, int],
        first: int,
        new: bool,
        created: str = "",
    ) -> Trackers | None:
        """Trackers for a run into `root`, continuing at generation `first` (steps_before[n]:
        the optimizer steps recorded before generation n, for every n up to `first`; what an
        interrupted attempt logged from there on is purged). `created`: the run's creation
        time (the manifest's), part of the W&B run id."""
        names = cfg.run.trackers
        if not names:
            return None
        check_trackers(names)
        from accelerate.tracking import TensorBoardTracker, WandBTracker

        from lmcollapse.config import to_plain

        where = RunLayout(root).trackers
        where.mkdir(parents=True, exist_ok=True)
        out: dict[str, Any] = {}
        if "tensorboard" in names:
            logs = where / "tensorboard"
            out["tensorboard-generations"] = TensorBoardTracker(
                "generations", logs, purge_step=first
            )
            out["tensorboard-steps"] = TensorBoardTracker(  # steps are counted from 1
                "steps", logs, purge_step=steps_before.get(first, 0) + 1
            )
        if "wandb" in names:
            key = f"{root.resolve()}|{created}".encode()
            run_id = hashlib.blake2b(key, digest_size=8).hexdigest()
            out["wandb"] = WandBTracker(
                "lmcollapse",
                name=root.name,
                id=run_id,
                resume="allow",
                dir=str(where),
                mode=wandb_mode(),
                config=to_plain(cfg, json_safe=True),
            )
        for tracker in out.values():
            if hasattr(tracker, "start"):  # accelerate >= 1.4; before, __init__ started it
                tracker.start()
        if "wandb" in out:
            run = out["wandb"].tracker
            run.define_metric("train/*", step_metric="train/step")
            run.define_metric("gen/*", step_metric="generation")
        if new and "tensorboard-generations" in out:
            out["tensorboard-generations"].writer.add_text(
                "config", "    " + _yaml(cfg).replace("\n", "\n    "), 0
            )
        return cls(out, dict(steps_before))

    def generation(self, n: int, row: dict[str, Any], steps: int) -> None:
        """Generation n's metrics (its metrics.csv row); `steps` its optimizer steps."""
        values = numeric(row, "gen/")
        self.offsets[n + 1] = self.offsets.get(n, 0) + steps
        if "tensorboard-generations" in self.trackers:
            self.trackers["tensorboard-generations"].log(values, step=n)
            self.trackers["tensorboard-generations"].writer.flush()
        if "wandb" in self.trackers:
            self.trackers["wandb"].log({**values, "generation": n})

    def step_logger(self, n: int) -> Callable[[int, float], None]:
        """A callback for generation n's training: (optimizer step within it, its loss)."""
        offset = self.offsets.get(n, 0)

        def log(step: int, loss: float) -> None:
            at = offset + step
            if "tensorboard-steps" in self.trackers:
                self.trackers["tensorboard-steps"].log({"train/loss": loss}, step=at)
            if "wandb" in self.trackers:
                self.trackers["wandb"].log({"train/loss": loss, "train/step": at})

        return log

    def finish(self) -> None:
        """Flush and close every tracker."""
        for tracker in self.trackers.values():
            tracker.finish()


def _yaml(cfg: Any) -> str:
    from lmcollapse.config import dump_yaml

    return dump_yaml(cfg)
