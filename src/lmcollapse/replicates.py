"""Replicated runs (issue 14): N runs of one experiment that share D0 and differ in run.seed,
aggregated generation by generation, so every curve has its interval.

    (the directory's layout: lmcollapse.repdir)

Replicate i has seed run.seed + i. The first one prepares D0; the others get its prepared data
as hard links (a copy where the file system has none), so D0 is shared byte for byte and
prepared once. A finished replicate is not run again; a larger run.replicates adds replicates;
more generations continue them all. `run.jobs` runs replicates in parallel processes, the cores
shared out among them (each process's torch threads, so they never oversubscribe).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from lmcollapse.artifacts import atomic_write_json, atomic_write_text
from lmcollapse.config import ExperimentConfig, differences, dump_yaml, to_plain
from lmcollapse.errors import InvalidInput
from lmcollapse.repdir import (
    FORMAT,
    INDEX,
    ReplicatedLayout,
    finished_generations,
    index_config,
    is_replicated,
    read_index,
    replicate_config,
    replicate_dirs,
    seeds,
    share_data,
)
from lmcollapse.runtime import say


def _check_resumable(root: Path, cfg: ExperimentConfig, resume: str) -> dict[str, Any] | None:
    """The existing index of a replicated run in `root` that cfg may continue (None: new)."""
    from lmcollapse.rundir import resumable

    if (root / "manifest.json").is_file():
        raise InvalidInput(
            f"{root} is a run of one seed, not a replicated run: give another --out for "
            f"--replicates {cfg.run.replicates}"
        )
    if not (root / INDEX).is_file():
        own = {INDEX, "config.yaml", "replicates.lock", "replicates"}
        if root.is_dir() and any(
            e.name not in own and not (e.name.startswith(".") and e.name.endswith(".tmp"))
            for e in root.iterdir()
        ):
            raise InvalidInput(
                f"{root} is not empty and holds no replicated run: give a new or empty --out "
                f"for --replicates {cfg.run.replicates}"
            )
        return None
    if resume == "never":
        raise InvalidInput(f"{root} already holds a replicated run (--resume never)")
    index = read_index(root)
    if cfg.run.replicates < len(index["seeds"]):
        raise InvalidInput(
            f"{root} holds {len(index['seeds'])} replicates: give --replicates "
            f"{len(index['seeds'])} or more (or none, to continue them all)"
        )
    stored = index_config(index)
    diff = [
        k
        for k in differences(to_plain(stored), to_plain(cfg))
        if not resumable(k) and k != "run.replicates"
    ]
    if diff:
        raise InvalidInput(
            f"{root} was run with another config (differs in: {', '.join(diff)}): rerun with "
            "the same config, or use another --out"
        )
    return index


def experiment_config(cfg: ExperimentConfig, root: Path) -> ExperimentConfig:
    """cfg as it applies to `root`: continuing a replicated run without --replicates continues
    all of its replicates."""
    if cfg.run.replicates == 1 and is_replicated(root):
        index = read_index(root)
        n = max(index_config(index).run.replicates, len(index["seeds"]))
        return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, replicates=n))
    return cfg


def replicated(cfg: ExperimentConfig, root: Path) -> bool:
    """Whether cfg runs into `root` as a replicated run."""
    return cfg.run.replicates > 1 or is_replicated(root)


def preflight_experiment(
    cfg: ExperimentConfig, root: Path, preset: str | None = None, resume: str = "auto"
) -> dict[str, Any] | None:
    """Every check of a run, replicated or not, that needs neither its data nor a write (for a
    replicated run, of every replicate); a replicated run's existing index, if any."""
    from lmcollapse.checks import preflight

    cfg = experiment_config(cfg, root)
    if not replicated(cfg, root):
        preflight(cfg, root, preset, resume)
        return None
    index = _check_resumable(root, cfg, resume)
    layout = ReplicatedLayout(root)
    for s in seeds(cfg):
        preflight(replicate_config(cfg, s), layout.replicate(s), preset, "auto")
    return index


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path | None = None,
    *,
    preset: str | None = None,
    resume: str = "auto",
    progress: bool = True,
    set_up_only: bool = False,
) -> Path:
    """`lmcollapse run`: one run (pipeline.run), or a replicated run when run.replicates > 1
    or `out` holds one."""
    from lmcollapse.config import validate
    from lmcollapse.pipeline import run
    from lmcollapse.rundir import default_out

    cfg = validate(cfg)
    root = Path(out or cfg.run.out or default_out(preset))
    cfg = experiment_config(cfg, root)
    if not replicated(cfg, root):
        return run(
            cfg, root, preset=preset, resume=resume, progress=progress, set_up_only=set_up_only
        )
    return _run_replicated(cfg, root, preset, resume, progress, set_up_only)


def _run_replicated(
    cfg: ExperimentConfig,
    root: Path,
    preset: str | None,
    resume: str,
    progress: bool,
    set_up_only: bool,
) -> Path:
    """Run (or continue) every replicate of the validated cfg in `root`, then aggregate and
    report them; returns root."""
    from lmcollapse.pipeline import run
    from lmcollapse.rundir import RunLock, missing_dirs

    layout = ReplicatedLayout(root)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InvalidInput(
            "a replicated run is not for accelerate launch with several processes: run it in "
            "one process (--jobs J runs J replicates at once), or launch each replicate "
            "(--set run.seed=S, one --out each)"
        )
    index = preflight_experiment(cfg, root, preset, resume)
    todo = seeds(cfg)
    known = [] if index is None else [int(s) for s in index["seeds"]]
    all_seeds = known + [s for s in todo if s not in known]
    made, new = missing_dirs(root), index is None
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create run directory {root}: {exc.strerror}") from None
    with RunLock(layout.lock):
        try:
            _write_index(layout, cfg, all_seeds, preset, "running")
            first = layout.replicate(todo[0])
            run(
                replicate_config(cfg, todo[0]),
                first,
                preset=preset,
                progress=progress,
                set_up_only=True,
            )
            if set_up_only:
                return root
            _run_all(cfg, layout, todo, preset, progress, first / "data")
        except InvalidInput:
            if new and not any(finished_generations(layout.replicate(s)) for s in todo):
                forget_new_replicated_run(root, made)  # bad input for a new run: leave nothing
            raise
        write_outputs(root)
        done = all(finished_generations(layout.replicate(s)) >= cfg.run.generations for s in todo)
        _write_index(layout, cfg, all_seeds, preset, "complete" if done else "running")
    say(f"done: {layout.report}", progress)
    return root


def forget_new_replicated_run(root: Path, made: list[Path]) -> None:
    """Remove what a new replicated run wrote before its input was refused: the directories it
    created, or in a directory it was given, its own files only."""
    from lmcollapse.rundir import forget_new_run

    if made:
        forget_new_run(root, made)
        return
    layout = ReplicatedLayout(root)
    shutil.rmtree(root / "replicates", ignore_errors=True)
    for path in (layout.index, layout.config, layout.lock):
        path.unlink(missing_ok=True)


def started_nothing(root: Path) -> bool:
    """Whether a replicated run in `root` has no finished generation in any replicate."""
    if not is_replicated(root):
        return True
    return not any(finished_generations(path) for _, path in replicate_dirs(root))


def _write_index(
    layout: ReplicatedLayout, cfg: ExperimentConfig, all_seeds: list[int], preset: Any, status: str
) -> None:
    from lmcollapse.rundir import now

    old: dict[str, Any] = {}
    if layout.index.is_file():
        old = read_index(layout.root)
    index = {
        "format": FORMAT,
        "kind": "lmcollapse replicated run",
        "created": old.get("created", now()),
        "updated": now(),
        "preset": preset if preset is not None else old.get("preset"),
        "seeds": all_seeds,
        "status": status,
        "config": to_plain(cfg),
    }
    atomic_write_text(layout.config, dump_yaml(cfg))
    atomic_write_json(layout.index, index)


def _run_all(
    cfg: ExperimentConfig,
    layout: ReplicatedLayout,
    todo: list[int],
    preset: str | None,
    progress: bool,
    data: Path,
) -> None:
    """Every unfinished replicate (D0 shared from `data`): one after another, or run.jobs at
    once."""
    from lmcollapse.pipeline import run

    left = [s for s in todo if finished_generations(layout.replicate(s)) < cfg.run.generations]
    jobs = min(cfg.run.jobs, len(left))
    if jobs <= 1:
        for i, s in enumerate(left, 1):
            say(f"replicate seed={s} ({i}/{len(left)} to run)", progress)
            out = layout.replicate(s)
            run(
                replicate_config(cfg, s),
                out,
                preset=preset,
                progress=progress,
                data_from=data,
                report=False,
            )
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // jobs)
    say(f"running {len(left)} replicates, {jobs} at once ({threads} thread(s) each)", progress)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_share_cores, initargs=(threads,)
    ) as pool:
        futures = [
            pool.submit(_run_one, replicate_config(cfg, s), layout.replicate(s), preset, data)
            for s in left
        ]
        try:
            for f in as_completed(futures):
                f.result()
        except BaseException:  # the first error: no queued replicate starts after it
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _share_cores(threads: int) -> None:
    """A replicate process's share of the cores: its torch and OpenMP threads."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _run_one(cfg: ExperimentConfig, out: Path, preset: str | None, data: Path) -> str:
    from lmcollapse.pipeline import run

    return str(run(cfg, out, preset=preset, progress=False, data_from=data, report=False))


def write_outputs(root: str | Path) -> None:
    """aggregate.csv, aggregate.json, theory_spread.json/.csv (paradigms the theory covers),
    figures/ and report.html from the replicates' files."""
    from lmcollapse.aggregate import aggregate_run, bridge_spread
    from lmcollapse.artifacts import csv_text
    from lmcollapse.bridge import BRIDGE_PARADIGMS
    from lmcollapse.report import write_report

    layout = ReplicatedLayout(Path(root))
    agg = aggregate_run(layout.root)
    atomic_write_text(layout.aggregate_csv, csv_text(agg.rows()))
    atomic_write_json(layout.aggregate_json, to_plain(agg, json_safe=True))
    if index_config(read_index(layout.root)).paradigm.name in BRIDGE_PARADIGMS:
        spread = bridge_spread(layout.root)
        atomic_write_json(layout.spread_json, to_plain(spread, json_safe=True))
        atomic_write_text(layout.spread_csv, csv_text(spread.rows()))
    write_report([layout.root], layout.report, figures_dir=layout.figures)


__all__ = [
    "INDEX",
    "ReplicatedLayout",
    "is_replicated",
    "preflight_experiment",
    "read_index",
    "replicate_config",
    "replicate_dirs",
    "run_experiment",
    "seeds",
    "share_data",
    "started_nothing",
    "write_outputs",
]
