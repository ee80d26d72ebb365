"""Errors users see. Every message names the bad value, where it is, and what to do."""

from __future__ import annotations


class PeftkitError(Exception):
    """Base class for errors caused by user input; the CLI prints them without a traceback (exit 2)."""

    exit_code = 2


class RecipeError(PeftkitError):
    """A recipe is invalid. Collects *every* problem so the user fixes them in one go.

    Attributes:
        problems: one line per problem, each starting with the dotted key it concerns.
        source: the recipe file the problems refer to, if any.
    """

    def __init__(self, problems: list[str] | str, source: str | None = None, *, what: str = "recipe"):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        self.what = what
        head = f"invalid {what} {source}" if source else f"invalid {what}"
        noun = "problem" if len(self.problems) == 1 else "problems"
        lines = [f"{head} ({len(self.problems)} {noun}):"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class PluginError(PeftkitError):
    """A plugin failed to load, registered a duplicate name, or broke its contract."""


class DataError(PeftkitError):
    """Input data is missing, empty or malformed (names the file and line)."""


class ModelSourceError(PeftkitError):
    """A model reference could not be resolved to a local Hugging Face folder."""


class TrainingError(PeftkitError):
    """Training cannot go on (for example a NaN loss); names the step and a hint."""
