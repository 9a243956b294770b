"""`lmcollapse sweep`: one run per value of a config key, then one report overlaying them all.

Bad input in any value is found before the first generation of any: every value is checked
first without writing (lmcollapse.checks.preflight: the config, its run directory, the model),
then every value is set up (its data prepared, its probes and model checked against the
tokenizer), and only then do the runs start, one after another. A value that fails its set-up
leaves nothing of its own; the values set up before it stay, ready to continue.
"""

from __future__ import annotations

from pathlib import Path

from lmcollapse.checks import preflight
from lmcollapse.config import ExperimentConfig
from lmcollapse.errors import InvalidInput
from lmcollapse.pipeline import run
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
        try:
            preflight(cfg, root / label, preset)
        except InvalidInput as exc:
            raise InvalidInput(f"sweep value {label}: {exc}") from None
    for label, cfg in configs.items():
        say(f"sweep: setting up {label}", progress)
        try:
            run(cfg, root / label, preset=preset, progress=progress, set_up_only=True)
        except InvalidInput as exc:
            raise InvalidInput(f"sweep value {label}: {exc}") from None
    dirs = []
    for label, cfg in configs.items():
        say(f"sweep: {label}", progress)
        dirs.append(run(cfg, root / label, preset=preset, progress=progress))
    report = write_report(dirs, root / "report.html", figures_dir=root / "figures")
    return dirs, report


__all__ = ["sweep"]
