"""A replicated run's directory (issue 14), read without running anything: its layout, its
index (replicates.json), its replicates' directories and configs, and D0 shared among them.
What lmcollapse.rundir is to one run; lmcollapse.replicates runs them.

    RUN/replicates.json          the replicated run: its config, seeds, status (format 1)
    RUN/config.yaml              the resolved config (run.replicates = N)
    RUN/replicates/seed=S/       replicate S: a run directory of its own (resumable as any)
    RUN/aggregate.csv            per generation, every numeric metric m: m_mean, m_lo, m_hi, m_n
    RUN/aggregate.json           the same with the interval method, and the collapse onset
    RUN/theory_spread.json, .csv p̂_n(v|x) across replicates next to the bridge's estimates
    RUN/report.html, figures/    bands: mean, interval, thin replicate lines
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmcollapse.config import ExperimentConfig, from_plain
from lmcollapse.errors import InvalidInput

INDEX = "replicates.json"
FORMAT = 1


@dataclass(frozen=True)
class ReplicatedLayout:
    """Where a replicated run's files live."""

    root: Path

    @property
    def index(self) -> Path:
        return self.root / INDEX

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def aggregate_csv(self) -> Path:
        return self.root / "aggregate.csv"

    @property
    def aggregate_json(self) -> Path:
        return self.root / "aggregate.json"

    @property
    def spread_json(self) -> Path:
        return self.root / "theory_spread.json"

    @property
    def spread_csv(self) -> Path:
        return self.root / "theory_spread.csv"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def lock(self) -> Path:
        return self.root / "replicates.lock"

    def replicate(self, seed: int) -> Path:
        return self.root / "replicates" / f"seed={seed}"


def is_replicated(path: str | Path) -> bool:
    """Whether `path` is a replicated run (it has replicates.json)."""
    return (Path(path) / INDEX).is_file()


def seeds(cfg: ExperimentConfig) -> list[int]:
    """The replicates' seeds: run.seed, run.seed + 1, ..."""
    return [cfg.run.seed + i for i in range(cfg.run.replicates)]


def replicate_config(cfg: ExperimentConfig, seed: int) -> ExperimentConfig:
    """Replicate `seed`'s config: the experiment's, one run of that seed."""
    run = dataclasses.replace(cfg.run, seed=seed, replicates=1, jobs=1, out=None)
    return dataclasses.replace(cfg, run=run)


def read_index(root: str | Path) -> dict[str, Any]:
    """replicates.json of a replicated run; a one-line error for anything else."""
    import json

    layout = ReplicatedLayout(Path(root))
    if not layout.index.is_file():
        raise InvalidInput(
            f"{root} is not a replicated run (no {INDEX}): run it with --replicates N"
        )
    try:
        index = json.loads(layout.index.read_text(encoding="utf-8"))
        seeds = index.get("seeds")
        ok = (
            index.get("format") == FORMAT
            and isinstance(index.get("config"), dict)
            and isinstance(seeds, list)
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds)
            and len(set(seeds)) == len(seeds)
        )
        if ok:
            index_config(index)
    except (OSError, ValueError, AttributeError, InvalidInput):
        ok = False
    if not ok:
        raise InvalidInput(
            f"{layout.index} is damaged or of another format: restore it, or rerun into a new --out"
        )
    return index


def index_config(index: dict[str, Any]) -> ExperimentConfig:
    """The config a replicated run was started with."""
    return from_plain(ExperimentConfig, index["config"])


def replicate_dirs(root: str | Path) -> list[tuple[int, Path]]:
    """(seed, directory) of every replicate the run has started, in seed order."""
    layout = ReplicatedLayout(Path(root))
    out = []
    for seed in read_index(root)["seeds"]:
        path = layout.replicate(int(seed))
        if (path / "manifest.json").is_file():
            out.append((int(seed), path))
    return out


def share_data(src: Path, dst: Path) -> None:
    """dst as a copy of the prepared data in src, file by file as hard links (a plain copy
    across file systems): the same bytes, no second preparation, no space. Written files are
    always replaced, never changed in place, so no replicate's write reaches another's."""
    if dst.exists():
        return
    tmp = dst.with_name(f".{dst.name}.sharing")  # a directory: not one of RunLock's *.tmp files
    shutil.rmtree(tmp, ignore_errors=True)
    for parent, _dirs, files in os.walk(src):
        target = tmp / Path(parent).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            if name.endswith(".tmp") or name == ".prepare.json":
                continue
            try:
                os.link(Path(parent) / name, target / name)
            except OSError:
                shutil.copy2(Path(parent) / name, target / name)
    tmp.rename(dst)


def finished_generations(path: Path) -> int:
    """How many generations a replicate has finished (0: none, or not started)."""
    from lmcollapse.rundir import RunLayout, completed, read_manifest

    rl = RunLayout(path)
    if not rl.manifest.is_file():
        return 0
    try:
        return len(completed(read_manifest(rl), rl))
    except InvalidInput:
        return 0


__all__ = [
    "FORMAT",
    "INDEX",
    "ReplicatedLayout",
    "finished_generations",
    "index_config",
    "is_replicated",
    "read_index",
    "replicate_config",
    "replicate_dirs",
    "seeds",
    "share_data",
]
