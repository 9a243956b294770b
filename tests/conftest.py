"""Test settings: nothing is written into the repository or a user cache, nothing is downloaded.

Hypothesis keeps no example database; Hugging Face libraries run offline with their caches (and
lmcollapse's) in a temporary directory; a prepared built-in corpus is shared by the tests that
need one.
"""

import os
import tempfile
from pathlib import Path

_TMP = tempfile.mkdtemp(prefix="lmcollapse-tests-")
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(_TMP, "hypothesis"))
os.environ["HF_HOME"] = os.path.join(_TMP, "hf")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_TMP, "hf", "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["LMCOLLAPSE_CACHE"] = os.path.join(_TMP, "lmcollapse")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
# Tiny models run fastest on one thread, and one thread per test process keeps a busy machine from
# oversubscribing its cores (OpenMP threads spin while they wait); subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402  (after the environment is set)
from hypothesis import settings  # noqa: E402

settings.register_profile("lmcollapse", database=None, deadline=None)
settings.load_profile("lmcollapse")


@pytest.fixture(scope="session")
def builtin_corpus(tmp_path_factory: pytest.TempPathFactory):
    """The default D0: 10,000 built-in stories, a BPE trained on them, a 5% holdout."""
    from lmcollapse.config import ExperimentConfig
    from lmcollapse.data.prepare import prepare

    return prepare(ExperimentConfig().data, tmp_path_factory.mktemp("corpus") / "builtin")


def _finished_run(factory: pytest.TempPathFactory, name: str, args: list[str]) -> Path:
    from helpers import lmc

    out = factory.mktemp("runs") / name
    done = lmc("run", "--quiet", "--out", str(out), *args)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="session")
def ngram_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-generation n-gram run (helpers.NGRAM); copy it before damaging it."""
    from helpers import NGRAM

    return _finished_run(tmp_path_factory, "ngram", NGRAM)


@pytest.fixture(scope="session")
def neo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-generation tiny GPT-Neo run (helpers.TINY_NEO); copy it before damaging it."""
    from helpers import TINY_NEO

    return _finished_run(tmp_path_factory, "neo", TINY_NEO)


@pytest.fixture
def launch_two_processes() -> list[str]:
    """`accelerate launch` of two CPU processes over gloo (accelerate's --cpu alone starts one);
    append the script or `-m module` and its arguments. Each launch gets a free port of its own:
    tests run in parallel workers, and two launches on accelerate's default port would meet."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
    ]


@pytest.fixture
def write(tmp_path: Path):
    """write("name.txt", text) -> path: a file in the test's directory."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory: a default output path never lands in the repo."""
    monkeypatch.chdir(tmp_path)
