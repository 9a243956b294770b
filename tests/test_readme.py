"""The README's Python examples run as written, and its commands match CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PY_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(PY_BLOCKS)))
def test_readme_python_examples_run(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, builtin_corpus
) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write runs/...; never into the repository
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "corpus").symlink_to(builtin_corpus.path)  # `corpus prepare`'s output
    exec(compile(PY_BLOCKS[index], f"README.md python block {index}", "exec"), {})


def test_ci_runs_the_readme_test_command() -> None:
    command = "ruff check . && python -m pytest -n auto"
    assert command in README
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
