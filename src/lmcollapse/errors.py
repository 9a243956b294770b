"""The exceptions that mean "the input is wrong": the CLI turns them into a one-line error, exit 2.

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class InvalidInput(ValueError):
    """Bad input (arguments, data, paths); the message names the problem and the fix."""


class ConfigError(InvalidInput):
    """An unusable configuration; `problems` lists every problem, each naming its key."""

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(self.problems))


class RunFailed(RuntimeError):
    """A run that cannot go on although its input was valid (a training that diverged, say):
    the CLI says so in one line, exit 1; the message says how to recover."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can be paragraphs)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
