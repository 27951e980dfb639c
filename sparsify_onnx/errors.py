"""User errors versus bugs.

`SparsifyError` is the one exception for user errors (bad spec, unknown tensor,
unsupported op, pattern mismatch, compile failure). The CLI prints it as one
message plus a hint, without a traceback, and exits 1. Anything else is a bug
(traceback, exit 2).
"""
from __future__ import annotations


class SparsifyError(Exception):
    """A user-facing error: what went wrong, where, and what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None, where: str | None = None,
                 details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where  # e.g. "spec.yaml:12 (rule 2)" or "node /layer.0/MatMul"
        self.details = details  # long text (compiler output, mismatch table), printed after

    def render(self) -> str:
        head = f"{self.where}: {self.message}" if self.where else self.message
        parts = [f"error: {head}"]
        if self.details:
            parts.append(self.details.rstrip())
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def __str__(self) -> str:  # keeps pytest output and logs readable
        return self.render()
