"""Exit codes and the two error families, decided in one place.

Every way out of the CLI goes through :func:`exit_code_for`, so the policy
"0 done, 1 user error, 2 internal error" lives here and nowhere else.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes documented in the README."""

    OK = 0
    USER_ERROR = 1
    INTERNAL_ERROR = 2
    INTERRUPTED = 130  # Ctrl-C (the shell's convention); `run` still writes the best proved ε


class MlrobustError(Exception):
    """Base of every error the tool raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UserError(MlrobustError):
    """Bad input from the user: a file, a flag, a spec. Exit code 1."""

    exit_code = ExitCode.USER_ERROR


class TargetNotInTopK(UserError):
    """The model misses the target on the unperturbed image: no neighborhood can be robust, so
    there is nothing to search (a sweep records the instance as skipped). Exit code 1."""


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for an exception escaping a command."""
    if isinstance(error, MlrobustError):
        return error.exit_code
    return ExitCode.INTERNAL_ERROR
