"""What can be checked of a run's inputs before its work starts.

Bad input should cost seconds, not an hour of data preparation or a finished first sweep value:

- `preflight` runs every check that needs neither the prepared data nor a write: the config, the
  run directory against it (a conflicting earlier run), that the target can be written, the
  model family's own limits (an `hf_config` that loads). `sweep` runs it for every value
  before the first run starts.
- `tokenizer_check` is what needs the tokenizer: data preparation calls it as soon as the
  tokenizer exists (before a pretrained one is copied; after a trained one is trained, before
  the long encoding of D0; when a prepared corpus is reused). A pretrained tokenizer is fetched
  only after the data source is known to be there: its errors say more.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmcollapse.config import ExperimentConfig
from lmcollapse.errors import InvalidInput


def tokenizer_check(cfg: ExperimentConfig) -> Callable[[Any], None]:
    """A check of cfg's probes and model against a tokenizer (a data.tokenizer.Tok)."""

    def check(tok: Any) -> None:
        from lmcollapse.curation.stage import check_reference
        from lmcollapse.data.tokenizer import single_token
        from lmcollapse.models import check_model
        from lmcollapse.models.pretrained import check_tokenizer

        for i, p in enumerate(cfg.evaluation.probes):
            if not tok.encode(p.context):
                raise InvalidInput(
                    f"evaluation.probes[{i}].context {p.context!r} encodes to no token"
                )
            for v in p.next:
                single_token(tok, v, f"evaluation.probes[{i}] token")
        if not (cfg.model.pretrained and cfg.training.init == "pretrained"):
            check_model(cfg.model, tok.vocab_size, tok.eos_id)  # else its checkpoint's config
        check_reference(cfg, tok.vocab_size)
        contexts = tuple(p.context for p in cfg.evaluation.probes)
        for spec, what in starting_points(cfg):
            check_tokenizer(spec, tok, what, contexts)

    return check


def starting_points(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    """The published models a run starts from: (name or path, the config key naming it)."""
    out = []
    if cfg.run.first_model:
        out.append((cfg.run.first_model, "run.first_model"))
    if cfg.model.pretrained and cfg.training.init != "scratch":
        out.append((cfg.model.pretrained, "model.pretrained"))
    return out


def check_writable(path: str | Path) -> None:
    """Raise InvalidInput unless a file can be made at `path` (its nearest existing folder takes
    a new file): a read-only disk or folder is found before the work, not after it."""
    p = Path(path).absolute()
    folder = next((q for q in (p, *p.parents) if q.exists()), Path("/"))
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a directory: choose another output path")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".lmcollapse-write-check-", suffix=".tmp")
    except OSError as exc:
        raise InvalidInput(
            f"cannot write to {folder} ({exc.strerror}): choose another output path, or make "
            "it writable"
        ) from None
    os.close(fd)
    os.unlink(probe)


def preflight(
    cfg: ExperimentConfig, out: str | Path, preset: str | None = None, resume: str = "auto"
) -> dict[str, Any]:
    """Every check of a run into `out` that needs neither its data nor a write (see above);
    returns the manifest to run with (rundir.start_or_resume)."""
    from lmcollapse.config import validate
    from lmcollapse.curation.hf_detector import check_detector
    from lmcollapse.models import family_of
    from lmcollapse.models.pretrained import check_local
    from lmcollapse.rundir import RunLayout, start_or_resume
    from lmcollapse.tracking import check_trackers

    cfg = validate(cfg)
    layout = RunLayout(Path(out))
    manifest = start_or_resume(cfg, layout, preset, resume)
    check_writable(layout.root)
    # the tokenizer's own checks come in data preparation (tokenizer_check), as soon as there
    # is one; here the asked vocabulary stands in for it
    vocab = cfg.model.vocab_size or cfg.data.tokenizer_vocab_size
    if not (cfg.model.pretrained and cfg.training.init == "pretrained"):  # else its own config
        problems = family_of(cfg.model.family).check(cfg.model, vocab)
        if problems:
            raise InvalidInput("; ".join(problems))
    for spec, what in starting_points(cfg):
        check_local(spec, what)
    check_detector(cfg)
    check_trackers(cfg.run.trackers)
    return manifest
