"""The run directory of `lmcollapse run`: where everything lives, its lock, its manifest, and
reading it back (config, metrics, status) — what the pipeline writes and the report, the bridge,
the inspection commands and the CLI read, with no dependence on the pipeline itself.

A run is a directory holding config.yaml (the resolved config), manifest.json (format, version,
status and one entry per generation, which counts as done once its metrics are written and the
manifest says so), run.lock, run.log, data/ and gen_NNN/ (see README: the run directory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from lmcollapse._version import __version__
from lmcollapse.config import ExperimentConfig, differences, from_yaml, to_plain
from lmcollapse.errors import InvalidInput
from lmcollapse.results import GenerationMetrics

RUN_FORMAT = "lmcollapse-run"

# 2: generated corpora mark their unfinished stories, and paradigm.unit exists (tokens by
# default); a run of version 1 is read but not continued.
RUN_VERSION = 2

# Keys that may change between invocations of the same run: its length, where it is, the device.
# what may change when a run is continued: nothing that changes a generation's numbers (the
# stats section only aggregates replicates)
RESUMABLE_KEYS = {"run.generations", "run.out", "run.device", "run.jobs", "run.trackers"}
RESUMABLE_SECTIONS = ("stats.",)


def resumable(key: str) -> bool:
    """Whether a config key may differ when a run is continued."""
    return key in RESUMABLE_KEYS or key.startswith(RESUMABLE_SECTIONS)


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """Where everything of a run lives (see README: the run directory)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def downstream_baseline(self) -> Path:
        return self.root / "downstream_baseline.json"

    @property
    def trackers(self) -> Path:
        return self.root / "trackers"

    def generation(self, n: int) -> Path:
        return self.root / f"gen_{n:03d}"

    def model(self, n: int) -> Path:
        return self.generation(n) / "model"

    def corpus(self, n: int) -> Path:
        return self.generation(n) / "corpus"

    def metrics(self, n: int) -> Path:
        return self.generation(n) / "metrics.json"

    def samples(self, n: int) -> Path:
        return self.generation(n) / "samples.txt"

    def distributions(self, n: int) -> Path:
        """p̂_n(·|x) of every probe over the whole vocabulary (generation 0: D0's counts)."""
        return self.generation(n) / "probes.npz"


class RunLock:
    """An exclusive lock on a run directory (fcntl.flock on run.lock): a second process that tries
    to write the same run is refused with the holder's pid. Released on exit or process death."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def __enter__(self) -> RunLock:
        import fcntl

        try:  # never through a link: a run.lock pointing elsewhere would get that file's pid
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise InvalidInput(
                f"cannot open {self.path} ({exc.strerror}): remove it if it is a link"
            ) from None
        self._fh = os.fdopen(fd, "a+")  # held until __exit__
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise InvalidInput(
                f"{self.path.parent} is being written by pid {holder}: wait for it or use "
                "another --out"
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()
        for stale in self.path.parent.glob(".*.tmp"):  # left by a killed writer: ours to remove
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *_: Any) -> None:
        import fcntl

        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()


def lock_holder(path: Path) -> str | None:
    """The pid holding a run's lock, or None when nobody holds it (reads, never writes)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return fh.read().strip() or "another process"
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


def default_out(preset: str | None) -> Path:
    """runs/<preset> (runs/experiment without a preset)."""
    return Path("runs") / (preset or "experiment")


def now() -> str:
    """The time in UTC, to the second, as the manifest records it."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files in name order (the manifest's fingerprints)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def refuse_links(root: Path) -> None:
    """A run directory holds no symbolic links: lmcollapse writes only inside it, and a link
    (run.lock, run.log, figures/, theory/, ...) would send those writes elsewhere."""
    if not root.is_dir():
        return
    for parent, dirs, files in os.walk(root):  # links to directories are listed, not followed
        for name in dirs + files:
            if os.path.islink(os.path.join(parent, name)):
                raise InvalidInput(
                    f"{Path(parent) / name} is a symbolic link: lmcollapse writes only inside "
                    "its run directory; replace the link with the file or folder itself"
                )


def run_containing(path: Path) -> Path | None:
    """The run directory `path` lies in (the nearest parent with an lmcollapse manifest)."""
    for parent in Path(os.path.abspath(path)).parents:
        if (parent / "manifest.json").is_file():
            try:
                read_manifest(RunLayout(parent))
            except InvalidInput:
                continue
            return parent
    return None


def start_or_resume(
    cfg: ExperimentConfig, layout: RunLayout, preset: str | None, resume: str
) -> dict[str, Any]:
    """The manifest to run with: the existing run's (after checking that it may be continued
    with this config and this version), or a new one. Writes nothing."""
    root = layout.root
    if root.exists() and not root.is_dir():
        raise InvalidInput(
            f"run directory {root} exists and is not a directory: choose another --out"
        )
    refuse_links(root)
    if layout.manifest.is_file():
        manifest = read_manifest(layout)
        if resume == "never":
            raise InvalidInput(
                f"{root} already holds a run: use another --out, or --resume auto to continue it"
            )
        version = manifest.get("version", 1)
        if not isinstance(version, int) or version > RUN_VERSION:
            raise InvalidInput(
                f"{root} was made by a newer lmcollapse (run format {version}): continue it "
                f"with that version, or use another --out"
            )
        if version < RUN_VERSION:
            if manifest.get("generations"):
                raise InvalidInput(
                    f"{root} was made by lmcollapse {manifest.get('lmcollapse_version', '0.1')},"
                    " whose generated corpora do not mark cut stories and whose shares count "
                    "stories: continuing it would mix two procedures, so start it again with "
                    "another --out (status, report, probe, sample and theory --from-run still "
                    "read it)"
                )
            # nothing generated yet: it continues as a new run (its config is written in full)
            manifest |= {"version": RUN_VERSION, "lmcollapse_version": __version__}
        stored = read_config(layout, manifest)
        diff = [k for k in differences(to_plain(stored), to_plain(cfg)) if not resumable(k)]
        if diff:
            raise InvalidInput(
                f"{root} was run with another config (differs in: {', '.join(diff)}): "
                "rerun with the same config, or use another --out"
            )
        return manifest
    if root.exists() and any(root.iterdir()):
        holder = lock_holder(layout.lock)
        if holder is not None:  # a run another process is starting: say which one
            raise InvalidInput(
                f"{root} is being written by pid {holder}: wait for it or use another --out"
            )
        if not _started_only(layout):
            raise InvalidInput(
                f"{root} is not empty and not an lmcollapse run (no manifest.json): "
                "choose another --out"
            )
    from lmcollapse.runtime import describe_hardware

    return {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "lmcollapse_version": __version__,
        "created": now(),
        "status": "running",
        "preset": preset,
        "seed": cfg.run.seed,
        "hardware": describe_hardware(),
        "versions": _versions(),
        "epochs": None,
        "generations": {},
    }


def config_is_partial(layout: RunLayout) -> bool:
    """A config.yaml written by an older version lacks the newer fields (resuming has already
    checked that their defaults are what this run uses): it is then written in full."""
    import yaml

    text = layout.config.read_text(encoding="utf-8")
    full = to_plain(from_yaml(ExperimentConfig, text, str(layout.config)))
    return bool(differences(full, yaml.safe_load(text)))


def _started_only(layout: RunLayout) -> bool:
    """Does the directory hold only what a run writes before its manifest (its lock, its log,
    its config, temporary files), left by a kill in that moment? It starts again as new."""
    own = {layout.lock.name, layout.log.name, layout.config.name}
    return all(
        (e.name in own or (e.name.startswith(".") and e.name.endswith(".tmp")))
        and e.is_file()
        and not e.is_symlink()
        for e in layout.root.iterdir()
    )


def missing_dirs(root: Path) -> list[Path]:
    """`root` and those of its parents that do not exist yet (nearest first): what creating it
    makes, and what forgetting a refused new run removes again."""
    return [p for p in (root, *root.parents) if not p.exists()]


def forget_new_run(root: Path, made: list[Path]) -> None:
    """Remove what a new run wrote before its input was refused: the directories it created
    (an empty `runs/` too), or everything in the (then empty) directory it was given, so a
    corrected rerun can start."""
    if made:
        shutil.rmtree(root, ignore_errors=True)
        for parent in made[1:]:
            with contextlib.suppress(OSError):  # only while empty
                parent.rmdir()
        return
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def read_manifest(layout: RunLayout) -> dict[str, Any]:
    """The manifest of an existing run; a clear error for anything else."""
    root = layout.root
    if not layout.manifest.is_file():
        if (root / "replicates.json").is_file():
            raise InvalidInput(
                f"{root} is a replicated run: give one of its replicates, "
                f"{root / 'replicates'}/seed=S (or `lmcollapse report` / `compare` the whole)"
            )
        raise InvalidInput(f"{root} is not an lmcollapse run (no manifest.json)")
    try:
        manifest = json.loads(layout.manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{layout.manifest} is damaged ({exc.__class__.__name__}): restore it from a copy, or "
            "start the run again with another --out"
        ) from None
    bad = (
        _generations_problem(manifest.get("generations", {}))
        if isinstance(manifest, dict)
        else None
    )
    if bad:
        raise InvalidInput(
            f"{layout.manifest} is damaged ({bad}): restore it, or start the run again with "
            "another --out"
        )
    if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
        raise InvalidInput(f"{root} is not an lmcollapse run (its manifest.json is someone else's)")
    return manifest


def _generations_problem(gens: Any) -> str | None:
    """What is wrong with a manifest's record of generations, if anything."""
    if not isinstance(gens, dict):
        return "its generations are not a mapping"
    for key, entry in gens.items():
        if not (re.fullmatch(r"[1-9][0-9]*", key) and isinstance(entry, dict)):
            return f"its generation {key!r} is not a record of a generation"
    return None


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "tokenizers", "datasets", "accelerate", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


def completed(manifest: dict[str, Any], layout: RunLayout) -> list[int]:
    """Generations the manifest records as complete and whose files are there."""
    done = []
    for key, entry in manifest.get("generations", {}).items():
        n = int(key)
        if entry.get("status") == "complete" and layout.metrics(n).is_file():
            done.append(n)
    return sorted(done)


# ----------------------------------------------------------------------------------------------
# Verifying what a finished generation left (its checksums are in the manifest)


def verified_corpus(layout: RunLayout, manifest: dict[str, Any], n: int) -> Any:
    """Generation n's corpus S_n, opened after checking its tokens against the checksum the
    manifest recorded when the generation finished (a changed or damaged corpus would give
    wrong numbers with exit 0)."""
    from lmcollapse.data.store import TokenStore

    path = layout.corpus(n)
    try:
        store = TokenStore.open(path)
    except InvalidInput as exc:
        raise InvalidInput(f"generation {n}'s corpus is damaged ({exc}): {_redo(n)}") from None
    recorded = manifest.get("generations", {}).get(str(n), {}).get("corpus_checksum")
    actual = store.checksum()
    if actual != store.meta.get("checksum") or (recorded is not None and actual != recorded):
        raise InvalidInput(
            f"{path}/tokens.npy does not match the checksum recorded when generation {n} "
            f"finished (the corpus was changed or damaged): {_redo(n)}"
        )
    return store


class Corpora:
    """The generated corpora a process reads: each verified against its recorded checksum the
    first time (once per process, not per generation), those this process made trusted."""

    def __init__(self, layout: RunLayout, manifest: dict[str, Any]) -> None:
        self.layout, self.manifest, self.trusted = layout, manifest, set()

    def open(self, n: int) -> Any:
        from lmcollapse.data.store import TokenStore

        if n in self.trusted:
            return TokenStore.open(self.layout.corpus(n))
        store = verified_corpus(self.layout, self.manifest, n)
        self.trusted.add(n)
        return store

    def trust(self, n: int) -> None:
        """Generation n's corpus was made by this process."""
        self.trusted.add(n)


def check_d0(manifest: dict[str, Any], corpus: Any, *, fresh: bool = False) -> None:
    """Record D0's and the holdout's checksums and the tokenizer's fingerprint in a new run's
    manifest, or check that a run's prepared data is the data it started with: data/ rebuilt
    from a changed source, or a tokens.npy changed in place, would silently change every later
    number. A store read back from disk has its checksum recomputed from its tokens (one pass);
    one just built (`fresh`) is compared by the checksum it was written with."""
    stores = {"d0_checksum": corpus.d0, "holdout_checksum": corpus.holdout}
    made = {
        k: (s.meta["checksum"], s.meta["checksum"] if fresh else s.checksum())
        for k, s in stores.items()
    }
    made["tokenizer"] = (corpus.tokenizer.fingerprint(),) * 2
    for key, (written, value) in made.items():
        recorded = manifest.setdefault(key, value)  # a run from before a key was recorded
        if not recorded == written == value:
            raise InvalidInput(
                f"{corpus.path} is not the data this run started with ({key} {value}, recorded "
                f"{recorded}): remove {corpus.path} and restore the source it was prepared from, "
                "then rerun; or start a new run with another --out"
            )


def check_fresh(manifest: dict[str, Any], stores: list[Any]) -> None:
    """The fresh real corpora F_j (paradigm.fresh) against the checksums recorded when each was
    first made, recomputed from their tokens; a new one's is recorded. A source that changed
    under a run (a rebuilt F_j that differs) would change what finished generations trained on."""
    recorded = manifest.setdefault("fresh_checksums", {})
    for j, store in enumerate(stores, start=1):
        actual = store.checksum()
        if recorded.get(str(j), actual) != actual or actual != store.meta.get("checksum"):
            raise InvalidInput(
                f"{store.path} does not match the fresh stories generation {j} added when the run "
                "made them (the source or the store changed): restore the source, or start a new "
                "run"
            )
        recorded[str(j)] = actual


def verified_model(layout: RunLayout, manifest: dict[str, Any], n: int) -> Path:
    """Generation n's model directory, after checking its files against the recorded SHA-256."""
    path = layout.model(n)
    recorded = manifest.get("generations", {}).get(str(n), {}).get("model_sha256")
    if not path.is_dir():
        raise InvalidInput(f"{path} is missing: {_redo(n)}")
    if recorded is not None and sha256_of(path) != recorded:
        raise InvalidInput(
            f"{path} does not match the SHA-256 recorded when generation {n} finished (the "
            f"model was changed or damaged): {_redo(n)}"
        )
    return path


def _redo(n: int) -> str:
    return (
        f"remove gen_{n:03d} and every later gen_* directory, then rerun `lmcollapse run` with the "
        "same --out to make them again"
    )


# ----------------------------------------------------------------------------------------------
# Outputs from metrics files


def load_metrics(run_dir: str | Path | RunLayout) -> list[dict[str, Any]]:
    """Every generation's metrics.json, generation 0 first."""
    layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(Path(run_dir))
    out = []
    for d in sorted(layout.root.glob("gen_[0-9][0-9][0-9]")):
        if (d / "metrics.json").is_file():
            out.append(_read_metrics(d / "metrics.json", int(d.name[4:])))
    return sorted(out, key=lambda m: m["generation"])


def _read_metrics(path: Path, n: int) -> dict[str, Any]:
    """One metrics.json; a damaged one is a one-line error naming it."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(metrics, dict) or not isinstance(metrics.get("generation"), int):
            raise ValueError("not a generation's metrics")
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{path} is damaged ({exc.__class__.__name__}): "
            + (_redo(n) if n else "remove it and rerun `lmcollapse run` (generation 0 is D0)")
        ) from None
    return metrics


def generation_metrics(layout: RunLayout, n: int) -> GenerationMetrics:
    """Generation n's metrics.json, typed."""
    return GenerationMetrics.from_plain(_read_metrics(layout.metrics(n), n))


def metrics_rows(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per generation (what metrics.csv holds)."""
    return [GenerationMetrics.from_plain(m).row() for m in metrics]


def status(run_dir: str | Path) -> dict[str, Any]:
    """What a run directory holds: its status, generations done, timings, latest metrics."""
    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout)
    done = completed(manifest, layout)
    metrics = load_metrics(layout)
    latest = metrics[-1] if metrics else None
    planned = manifest.get("generations_planned")
    return {
        "run": str(layout.root),
        "status": manifest.get("status"),
        "error": manifest.get("error"),
        "preset": manifest.get("preset"),
        "created": manifest.get("created"),
        "updated": manifest.get("updated"),
        "generations_done": done,
        "generations_planned": planned,
        "epochs": manifest.get("epochs"),
        "seconds": {str(n): _timings(manifest["generations"][str(n)]) for n in done},
        "perplexity": {str(m["generation"]): m.get("perplexity") for m in metrics},
        "latest": None
        if latest is None
        else {"generation": latest["generation"], "perplexity": latest.get("perplexity")},
        "report": str(layout.report) if layout.report.is_file() else None,
    }


def _timings(entry: dict[str, Any]) -> dict[str, float]:
    """A generation's seconds per stage, as far as the manifest holds numbers."""
    sec = entry.get("seconds")
    if not isinstance(sec, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in sec.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def collapse_summary(run_dir: str | Path, factor: float = 2.0) -> dict[str, Any]:
    """When a run's held-out perplexity first exceeded `factor` times generation 1's, and where
    it ended: the yardstick a sweep compares its runs by."""
    metrics = [m for m in load_metrics(run_dir) if m["generation"] >= 1]
    ppl = [(m["generation"], m.get("perplexity")) for m in metrics if m.get("perplexity")]
    if not ppl:
        return {"generations": 0, "first": None, "last": None, "onset": None}
    first = ppl[0][1]
    onset = next((g for g, v in ppl if v > factor * first), None)
    return {
        "generations": len(ppl),
        "first": first,
        "last": ppl[-1][1],
        "onset": onset,
        "factor": factor,
    }


def write_config(layout: RunLayout, manifest: dict[str, Any], cfg: ExperimentConfig) -> None:
    """config.yaml, and its SHA-256 in the manifest (written with it by the caller)."""
    from lmcollapse.artifacts import atomic_write_text
    from lmcollapse.config import dump_yaml

    atomic_write_text(layout.config, dump_yaml(cfg))
    manifest["config_sha256"] = sha256_of(layout.config)


def read_config(layout: RunLayout, manifest: dict[str, Any]) -> ExperimentConfig:
    """A run's config.yaml, checked against the SHA-256 the manifest recorded when it was
    written: a hand-edited config would make every later number (and every reading of the
    run) silently use other settings than the run's."""
    if not layout.config.is_file():
        raise InvalidInput(
            f"{layout.config} is missing: put the run's config.yaml back, or start a new run"
        )
    recorded = manifest.get("config_sha256")
    if recorded is not None and sha256_of(layout.config) != recorded:
        raise InvalidInput(
            f"{layout.config} was changed after the run wrote it: restore it (the run was made "
            "with the recorded one), or start a new run with another --out for other settings"
        )
    return from_yaml(
        ExperimentConfig, layout.config.read_text(encoding="utf-8"), str(layout.config)
    )


def run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config a run was made with (a run of format 1 counted its shares in
    stories, whatever today's default unit is)."""
    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout)
    cfg = read_config(layout, manifest)
    if manifest.get("version", 1) < RUN_VERSION:
        cfg = dataclasses.replace(cfg, paradigm=dataclasses.replace(cfg.paradigm, unit="stories"))
    return cfg
