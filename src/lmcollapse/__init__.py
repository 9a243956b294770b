"""lmcollapse: recursive training of auto-regressive language models, and why they collapse.

Implements "Theoretical Proof that Auto-regressive Language Models Collapse when Real-world Data is
a Finite Set": `lmcollapse.run` (the experiment, as `lmcollapse run`), `lmcollapse.theory`
(Section 2, pure numpy), configuration (`lmcollapse.config`) and the `lmcollapse` command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmcollapse._version import __version__ as __version__


def run(config: Any = None, out: str | Path | None = None, **kwargs: Any) -> Path:
    """Run (or continue) the recursive-training experiment; returns the run directory.

    config: an ExperimentConfig, a preset name, or None for the demo preset. Keyword arguments
    go to `lmcollapse.replicates.run_experiment` (resume, progress): one run, or with
    run.replicates > 1 a replicated run, as `lmcollapse run` does.
    """
    from lmcollapse.config import ExperimentConfig, resolve
    from lmcollapse.replicates import run_experiment as run_pipeline

    preset = None
    if config is None or isinstance(config, str):
        preset = config or "demo"
        config = resolve(ExperimentConfig, preset=preset)
    return run_pipeline(config, out, preset=preset, **kwargs)
