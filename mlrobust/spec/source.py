"""Reading a spec file's text, within limits, with every refusal a diagnostic.

Specs come from pull requests and their `extends` can name any path, so the front end reads
only regular files (not `/dev/zero`, a pipe or a folder), at most MAX_FILE_BYTES of them, as
strict UTF-8: whatever it reads it can then parse, format and report on in time and memory
proportional to that limit. The limits are documented in docs/spec-language.md ("Limits").
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mlrobust.contract.span import Span
from mlrobust.spec.diagnostics import Diagnostic, SpecError

MAX_FILE_BYTES = 256 << 10  # 256 KiB: a 1,000-canvas sweep is ~40 KB; the densest 256 KiB parse in seconds
MAX_NESTING = 32  # lists, calls and blocks inside each other; real specs use 3
MAX_EXTENDS = 32  # files in one extends chain, the spec itself included


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(code: str, message: str, span: Span, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(code, message, span, hint)])


def too_large(file: str, size: int | None, span: Span | None = None) -> SpecError:
    """The diagnostic for text over the limit (a file's bytes, or characters given to the parser);
    `size` None when the read stopped at the limit (a file that grew, or one whose size is unknown)."""
    amount = f"{size:,} bytes" if size is not None else f"larger than {MAX_FILE_BYTES:,} bytes"
    return _refuse(
        "file-too-large",
        f"{file} is {amount}; a spec file may have at most {MAX_FILE_BYTES:,}",
        span or Span(file, 1, 1, 1, 1),
        "split the spec: put shared fields in a base and `extends` it, or sweep with glob() or rows()",
    )


def _undecodable(path: Path, data: bytes, error: UnicodeDecodeError, span: Span) -> SpecError:
    before = data[: error.start]
    line = before.count(b"\n") + 1
    column = error.start - (before.rfind(b"\n") + 1) + 1
    return _refuse(
        "unreadable-file",
        f"{path} is not UTF-8 text: byte 0x{data[error.start]:02x} at line {line}, column {column}",
        span,
        "save the file as UTF-8",
    )


def read_spec_text(path: Path, at: Span | None = None) -> str:
    """The text of a spec file; raises SpecError (file-not-found, unreadable-file, file-too-large).

    `at` is where to blame a problem (the `extends` that names the file); by default the
    file's first line. The file is checked before it is opened (a FIFO would block `open`) and
    again through the open descriptor (it may have been swapped in between), and read with a
    bound, since `st_size` is 0 for files such as those in /proc. Line ends are translated as
    Python's text mode does, so a CRLF file reads (and formats) as it always did.
    """
    span = at or Span(str(path), 1, 1, 1, 1)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(
                "unreadable-file",
                f"{path} is {_kind(mode)}, not a spec file",
                span,
                "a spec is a regular .mlr text file",
            )
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _refuse("unreadable-file", f"{path} is {_kind(info.st_mode)}, not a spec file", span)
            if info.st_size > MAX_FILE_BYTES:
                raise too_large(str(path), info.st_size, at)
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _refuse("file-not-found", f"spec file not found: {path}", span) from None
    except (OSError, ValueError) as error:  # no permission, a NUL byte or a name too long, a loop of links, …
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise _refuse("unreadable-file", f"cannot read spec file {path}: {reason}", span) from None
    if len(data) > MAX_FILE_BYTES:
        raise too_large(str(path), None, at)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _undecodable(path, data, error, span) from None
    # newlines as text mode reads them (what Path.read_text did here before): \r\n and \r are \n
    return text.replace("\r\n", "\n").replace("\r", "\n")
