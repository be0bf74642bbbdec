"""Reading a spec file and the files it extends, merged into one set of fields.

`extends "base.mlr"` pulls in another spec's fields: the extending file's fields win, blocks
merge field by field. Every value keeps its own span, so a path is later resolved against the
folder of the file that wrote it, and a diagnostic points into the right file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlrobust.contract.span import Span
from mlrobust.spec import syntax as s
from mlrobust.spec.diagnostics import Diagnostic, SpecError
from mlrobust.spec.parser import parse_text
from mlrobust.spec.source import MAX_EXTENDS, read_spec_text


@dataclass
class Merged:
    """All fields of a spec after extends: top-level fields and blocks of fields."""

    root: Path
    fields: dict[str, s.Field] = field(default_factory=dict)
    blocks: dict[str, dict[str, s.Field]] = field(default_factory=dict)
    block_spans: dict[str, Span] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # base first, root last


def read_document(path: Path, diagnostics: list[Diagnostic], at: Span | None = None) -> s.Document | None:
    """Parse one file; problems become diagnostics (at `at`, the `extends` naming it, if given).

    Only a regular UTF-8 file within the size limit is read (spec/source.py): `extends` may
    name any path, and a spec from a pull request must not make lint read /dev/zero.
    """
    try:
        return parse_text(read_spec_text(path, at), str(path))
    except SpecError as error:
        diagnostics.extend(error.diagnostics)
        return None


def _base_of(path: Path, document: s.Document, diagnostics: list[Diagnostic]) -> tuple[Path, s.String] | None:
    """The file a document extends (resolved), or None; extra `extends` become diagnostics."""
    extends = [st for st in document.statements if isinstance(st, s.Extends)]
    for extra in extends[1:]:
        diagnostics.append(
            Diagnostic("duplicate-field", "a spec extends at most one other spec", extra.span, "keep one `extends`")
        )
    if not extends:
        return None
    target = extends[0].path
    try:
        return (path.parent / target.value).resolve(), target
    except (ValueError, OSError, RuntimeError) as error:  # a NUL byte, a loop of links, …
        diagnostics.append(Diagnostic("file-not-found", f"cannot use {target.value!r} as a path: {error}", target.span))
        return None


def _documents(path: Path, diagnostics: list[Diagnostic]) -> list[s.Document]:
    """The file and its bases, base first. Cycles, missing bases and overlong chains become diagnostics.

    A loop, not recursion: a chain of any length (or a cycle) costs no stack, and stops at
    MAX_EXTENDS files.
    """
    chain: list[Path] = []
    documents: list[s.Document] = []
    at: Span | None = None
    while True:
        document = read_document(path, diagnostics, at)
        if document is None:
            break
        chain.append(path)
        documents.append(document)
        found = _base_of(path, document, diagnostics)
        if found is None:
            break
        base, target = found
        if base in chain:
            loop = " -> ".join(p.name for p in (*chain[chain.index(base) :], base))
            diagnostics.append(
                Diagnostic(
                    "extends-cycle",
                    f"specs extend each other in a cycle: {loop}",
                    target.span,
                    "remove one `extends` so the chain ends",
                )
            )
            break
        if len(chain) >= MAX_EXTENDS:
            diagnostics.append(
                Diagnostic(
                    "extends-too-deep",
                    f"this `extends` makes a chain of more than {MAX_EXTENDS} spec files",
                    target.span,
                    f"a chain may hold at most {MAX_EXTENDS} files: merge some bases into one",
                )
            )
            break
        path, at = base, target.span
    return documents[::-1]


def _merge_fields(
    into: dict[str, s.Field], fields: tuple[s.Field, ...] | list[s.Field], diagnostics: list[Diagnostic], where: str
) -> None:
    seen: dict[str, s.Field] = {}
    for item in fields:
        if item.key in seen:
            first = seen[item.key].key_span
            diagnostics.append(
                Diagnostic(
                    "duplicate-field",
                    f"{where}`{item.key}` is given twice (first at line {first.line})",
                    item.key_span,
                    "remove one of them",
                )
            )
            continue
        seen[item.key] = item
        into[item.key] = item  # a later file overrides its base


def merge(path: Path, diagnostics: list[Diagnostic]) -> Merged:
    merged = Merged(root=path.resolve())
    for document in _documents(path.resolve(), diagnostics):
        merged.files.append(Path(document.file))
        top = [st for st in document.statements if isinstance(st, s.Field)]
        _merge_fields(merged.fields, top, diagnostics, "")
        seen_blocks: set[str] = set()
        for block in (st for st in document.statements if isinstance(st, s.Block)):
            if block.name in seen_blocks:
                diagnostics.append(
                    Diagnostic(
                        "duplicate-field",
                        f"block `{block.name}` is given twice",
                        block.name_span,
                        "put all its fields in one block",
                    )
                )
                continue
            seen_blocks.add(block.name)
            merged.block_spans[block.name] = block.span
            _merge_fields(merged.blocks.setdefault(block.name, {}), block.fields, diagnostics, f"{block.name}.")
    return merged
