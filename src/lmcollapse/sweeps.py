"""`lmcollapse sweep`: one run per value of a config key, then one report overlaying them all.

Bad input in any value is found before the first generation of any: every value is checked
first without writing (lmcollapse.checks.preflight: the config, its run directory, the model),
then every value is set up (its data prepared, its probes and model checked against the
tokenizer), and only then do the runs start, one after another. Bad input anywhere removes
what this call started and nothing finished in (as a refused `run` does), so the corrected
rerun starts clean; runs with a finished generation stay, to be continued.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmcollapse.config import ExperimentConfig
from lmcollapse.errors import InvalidInput
from lmcollapse.replicates import (
    forget_new_replicated_run,
    is_replicated,
    preflight_experiment,
    started_nothing,
)
from lmcollapse.replicates import run_experiment as run
from lmcollapse.rundir import RunLayout, completed, forget_new_run, missing_dirs, read_manifest
from lmcollapse.runtime import say


def sweep(
    configs: dict[str, ExperimentConfig],
    out: str | Path,
    *,
    preset: str | None = None,
    progress: bool = True,
) -> tuple[list[Path], Path]:
    """Run (or continue) one experiment per config into out/<label>, then one report overlaying
    them all (out/report.html, figures in out/figures). Returns (run directories, report)."""
    from lmcollapse.report import write_report

    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InvalidInput(f"sweep directory {root} exists and is not a directory: choose another")
    for label, cfg in configs.items():
        _value(label, preflight_experiment, cfg, root / label, preset)
    made = {label: missing_dirs(root / label) for label in configs}
    new = [
        label
        for label in configs
        if not RunLayout(root / label).manifest.is_file() and not is_replicated(root / label)
    ]
    try:
        for label, cfg in configs.items():
            say(f"sweep: setting up {label}", progress)
            _value(
                label, run, cfg, root / label, preset=preset, progress=progress, set_up_only=True
            )
        dirs = []
        for label, cfg in configs.items():
            say(f"sweep: {label}", progress)
            dirs.append(_value(label, run, cfg, root / label, preset=preset, progress=progress))
    except InvalidInput:  # what this call started and nothing finished in goes again, as in `run`
        for label in new:
            layout = RunLayout(root / label)
            if layout.manifest.is_file() and not completed(read_manifest(layout), layout):
                forget_new_run(root / label, made[label])
            elif is_replicated(root / label) and started_nothing(root / label):
                forget_new_replicated_run(root / label, made[label])
        raise
    report = write_report(dirs, root / "report.html", figures_dir=root / "figures")
    return dirs, report


def _value(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) for one sweep value; its errors name the value."""
    try:
        return fn(*args, **kwargs)
    except InvalidInput as exc:
        raise InvalidInput(f"sweep value {label}: {exc}") from None


__all__ = ["sweep"]
