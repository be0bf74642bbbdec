"""A mutation fuzzer for .mlr specs: bad input must end in exit 0 or 1, never exit 2 or a hang.

Usage: python bench/fuzz_specs.py [--mutants 500] [--seed 0] [--timeout 20] [--show 10] [--outcomes FILE]

It takes the bundled specs (specs/ and tests/specs/, their relative paths made absolute so a
mutant in a temporary folder still names the real models and images), makes deterministic
seeded mutants of them (byte and token deletion, duplication, swaps, random tokens, huge
numbers, deep nesting, odd Unicode and other encodings, truncation, field-value swaps, huge
strings, long `extends` chains, `extends` of files that are not specs) and runs
`mlrobust lint` and `mlrobust fmt --check` on each. It prints how many mutants it tried and
how many ended in exit 0 (both commands), exit 1 (a user error from either), exit 2 (an
internal error, or a worker that died) and timeouts, then the first failures.

The commands run in-process in a worker process (a fresh `python` per mutant would spend a
second on imports each), under a memory limit, one mutant at a time: the parent waits
`--timeout` seconds for each answer, and a worker that does not answer is killed, counted as
a timeout and replaced, so a hang is counted instead of hanging the fuzzer. The worker
imports `mlrobust` from wherever sys.path finds it: PYTHONPATH=/other/checkout measures that
checkout's code with the same mutants.

tests/test_spec_fuzz.py runs it: 60 mutants by default, 600 in the slow set.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED_FOLDERS = ("specs", "tests/specs")
COMMANDS: tuple[tuple[str, ...], ...] = (("lint",), ("fmt", "--check"))
WORKER_MEMORY = 3 << 30  # address space of the worker: a runaway read fails fast instead of swapping the machine
MAIN = "spec.mlr"

# --- seeds -------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\\n]|\\["\\nt])*"')


def _absolute_paths(text: str, folder: Path) -> str:
    """Every string that names an existing file relative to `folder`, made absolute.

    A mutant lives in a temporary folder; without this its paths would all be missing and the
    fuzzer would never reach the checks that read models, images, masks and bases.
    """

    def fix(match: re.Match[str]) -> str:
        value = match.group(0)[1:-1]
        if not value or value.startswith("/") or "\\" in value:
            return match.group(0)
        try:
            target = (folder / value).resolve()
            exists = target.exists()
        except (OSError, ValueError):
            return match.group(0)
        return f'"{target}"' if exists else match.group(0)

    return _STRING.sub(fix, text)


def seed_specs(repo: Path = REPO) -> list[tuple[str, str]]:
    """(name, text) of every bundled spec, paths absolute; sorted so the mutants are reproducible."""
    seeds = []
    for folder in SEED_FOLDERS:
        for path in sorted((repo / folder).rglob("*.mlr")):
            text = path.read_text(encoding="utf-8")
            seeds.append((str(path.relative_to(repo)), _absolute_paths(text, path.parent)))
    if not seeds:
        raise SystemExit(f"no seed specs under {repo}")
    return seeds


# --- mutations ---------------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|->|[-+]?\d[\w.+-]*|\.\d\w*|[A-Za-z_]\w*|\s+|.', re.S)
_FIELD = re.compile(r"^(?P<indent>[ \t]*)(?P<key>[A-Za-z_]\w*)[ \t]*=[ \t]*(?P<value>[^\n]*)$", re.M)

HUGE_NUMBERS = (
    "1e308",
    "1e309",
    "-1e309",
    "1e999",
    "1e-400",
    "-0",
    "0",
    "9" * 5001,
    "9" * 400,
    "0." + "0" * 400 + "1",
    "18446744073709551616",
    "99999999999999999999s",
    "1e3s",
    "-5min",
    "0ms",
)
ODD_TEXT = (
    "é",
    "→",
    "\u202e",
    "\x00",
    "\ufeff",
    "😀",
    ":x:",
    ":thumbs_up:",
    "[bold red]",
    "[/]",
    "\t",
    "\r",
    "\r\n",
    "\x0c",
    "\\",
    '"',
    "'",
    "#",
    "\u2028",
    "ß",
)
PUNCTUATION = ("{", "}", "[", "]", "(", ")", "=", ",", "->", "extends", '""', '"x"', "true", "false")
NAMES = (
    "rectangle",
    "rect",
    "uniform",
    "linear",
    "exponential",
    "padded",
    "object_only",
    "other_digit",
    "first_digit",
    "second_digit",
    "fixed",
    "sensitivity",
    "all",
    "glob",
    "rows",
    "attack",
    "bounds",
    "milp",
    "bab",
    "external",
    "search",
    "sweep",
    "model",
    "mask",
    "weights",
    "range",
    "resolution",
    "canvases",
    "k",
)
# Whole values a field might be given: the edges the front end must refuse with a diagnostic.
VALUES = (
    "rectangle",
    "rect",
    "rect()",
    "rect(1e309, 0, 1, 1)",
    "rect(0, 0, " + "9" * 40 + ", 1)",
    "uniform(1e309)",
    "uniform(1e308)",
    "uniform(0)",
    "exponential(base = 1e308)",
    "exponential(base = 1e309)",
    "exponential(base = 0)",
    "linear(start = 1e308, end = 1e308)",
    "padded([1e308], fill = 1e308)",
    "[1e308, 1e308, 1e308]",
    "[0, 1e999]",
    "[-1e308, 1e308]",
    "[0, 1]",
    "[]",
    "[[[[[[]]]]]]",
    "2",
    "1e308",
    "1e-320",
    "0",
    "-1",
    "9" * 5001,
    "rows(0, 0)",
    "rows(0, " + "9" * 30 + ")",
    'glob("nothing/*.png")',
    'glob("/etc/*")',
    "all",
    "other_digit",
    '"/etc/passwd"',
    '"/dev/zero"',
    '"."',
    '"\\u0000"',
    "attack(steps = 1e309)",
    "milp(time_limit = 99999999999999999999s)",
    "bounds(method = nope)",
    "bab(batch = 1)",
    'external(command = "")',
    "999999999999999999999999h",
    "1e3s",
    "true",
    '"' + "x" * 5000 + '"',
)
ODD_EXTENDS = ("/dev/zero", "/etc/passwd", "/", ".", "/proc/self/status", "missing.mlr", "", "spec.mlr")


@dataclass(frozen=True)
class Mutant:
    """One mutated spec: its files (MAIN first, bases for extends chains after) as bytes."""

    name: str
    operators: tuple[str, ...]
    files: dict[str, bytes]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text) or [text]


def _position(rng: random.Random, text: str) -> int:
    return rng.randrange(len(text) + 1)


def delete_bytes(rng: random.Random, text: str) -> str:
    at = _position(rng, text)
    return text[:at] + text[at + rng.randint(1, 8) :]


def delete_token(rng: random.Random, text: str) -> str:
    tokens = _tokens(text)
    del tokens[rng.randrange(len(tokens))]
    return "".join(tokens)


def duplicate_token(rng: random.Random, text: str) -> str:
    tokens = _tokens(text)
    at = rng.randrange(len(tokens))
    tokens.insert(at, tokens[at] * rng.choice((1, 1, 2, 50)))
    return "".join(tokens)


def swap_tokens(rng: random.Random, text: str) -> str:
    tokens = _tokens(text)
    a, b = rng.randrange(len(tokens)), rng.randrange(len(tokens))
    tokens[a], tokens[b] = tokens[b], tokens[a]
    return "".join(tokens)


def insert_token(rng: random.Random, text: str) -> str:
    pool = rng.choice((HUGE_NUMBERS, ODD_TEXT, PUNCTUATION, NAMES, VALUES))
    token = rng.choice(pool)
    at = _position(rng, text)
    return text[:at] + rng.choice(("", " ")) + token + rng.choice(("", " ")) + text[at:]


def deep_nesting(rng: random.Random, text: str) -> str:
    depth = rng.choice((40, 100, 250, 500, 1000, 3000))
    opener, closer, inner = rng.choice((("[", "]", "1"), ("f(", ")", "1"), ("[", "]", ""), ("a(x = ", ")", "2")))
    value = opener * depth + inner + closer * depth
    if rng.random() < 0.2:
        value = opener * depth  # never closed
    return _set_field(rng, text, value)


def truncate(rng: random.Random, text: str) -> str:
    return text[: _position(rng, text)]


def swap_field_values(rng: random.Random, text: str) -> str:
    fields = list(_FIELD.finditer(text))
    if len(fields) < 2:
        return insert_token(rng, text)
    a, b = sorted(rng.sample(fields, 2), key=lambda m: m.start())
    value_a, value_b = a.group("value"), b.group("value")
    return (
        text[: a.start("value")] + value_b + text[a.end("value") : b.start("value")] + value_a + text[b.end("value") :]
    )


def _set_field(rng: random.Random, text: str, value: str) -> str:
    """Give a random field `value`; or add a field with it when the text has none."""
    fields = list(_FIELD.finditer(text))
    if not fields or rng.random() < 0.2:
        key = rng.choice(("mask", "weights", "range", "k", "target", "cutting", "chain", "canvas"))
        return text + f"\n{key} = {value}\n"
    chosen = rng.choice(fields)
    return text[: chosen.start("value")] + value + text[chosen.end("value") :]


def edge_value(rng: random.Random, text: str) -> str:
    """A field given one of the values the front end must refuse (or accept) cleanly."""
    value = rng.choice(VALUES)
    if rng.random() < 0.3:
        key, block = rng.choice(
            (
                ("resolution", "search"),
                ("queries", "search"),
                ("seed", "search"),
                ("time_limit", "search"),
                ("canvases", "sweep"),
                ("images", "sweep"),
                ("models", "sweep"),
            )
        )
        return text + f"\n{block} {{\n  {key} = {value}\n}}\n"
    return _set_field(rng, text, value)


def huge_text(rng: random.Random, text: str) -> str:
    """A big string, many glued units, or very many fields: the front end must stay fast."""
    kind = rng.choice(("string", "string", "units", "lines", "comment"))
    if kind == "string":
        size = rng.choice((100_000, 1_000_000, 5_000_000))
        return text + f'\ncanvas = "{"a" * size}"\n'
    if kind == "units":
        return text + "\nk = " + " ".join(["5m"] * rng.choice((500, 5000))) + "\n"
    if kind == "lines":
        return text + "".join(f"\nfield{i} = {i}" for i in range(rng.choice((1000, 20000))))
    return text + "\n#" + "x" * 2_000_000 + "\n"


def odd_unicode(rng: random.Random, text: str) -> str:
    at = _position(rng, text)
    return text[:at] + "".join(rng.choice(ODD_TEXT) for _ in range(rng.randint(1, 4))) + text[at:]


def markup_in_strings(rng: random.Random, text: str) -> str:
    """Rich markup and emoji codes where a diagnostic echoes the line: they must print as written."""
    return _set_field(rng, text, rng.choice(('"[bold]x[/bold] :x:"', ":x:", "[red]", '"[link=file:///etc]y[/link]"')))


OPERATORS: dict[str, Callable[[random.Random, str], str]] = {
    "delete-bytes": delete_bytes,
    "delete-token": delete_token,
    "duplicate-token": duplicate_token,
    "swap-tokens": swap_tokens,
    "insert-token": insert_token,
    "deep-nesting": deep_nesting,
    "truncate": truncate,
    "swap-field-values": swap_field_values,
    "edge-value": edge_value,
    "odd-unicode": odd_unicode,
    "markup": markup_in_strings,
    "huge": huge_text,
}
# Operators that make a whole-file change, chosen less often (their mutants are few and similar).
RARE = {"huge": 0.25, "deep-nesting": 0.5}


def _extends_chain(rng: random.Random, text: str) -> dict[str, bytes]:
    """MAIN extends base1, which extends base2, …: long chains, cycles, and non-spec targets."""
    length = rng.choice((2, 40, 300, 1500))
    files: dict[str, bytes] = {MAIN: f'extends "base1.mlr"\n{text}'.encode()}
    for i in range(1, length + 1):
        target = f"base{i + 1}.mlr" if i < length else rng.choice(("base1.mlr", "end.mlr"))
        files[f"base{i}.mlr"] = f'extends "{target}"\nk = 2\n'.encode()
    files["end.mlr"] = b"range = [0, 1]\n"
    return files


def _encoded(rng: random.Random, text: str) -> bytes:
    """The mutant's bytes: mostly UTF-8; sometimes Latin-1, UTF-16, a BOM or a stray byte."""
    roll = rng.random()
    if roll < 0.04:
        return text.encode("latin-1", errors="replace") + "é".encode("latin-1")
    if roll < 0.06:
        return text.encode("utf-16")
    if roll < 0.08:
        return b"\xef\xbb\xbf" + text.encode("utf-8", errors="surrogatepass")
    if roll < 0.10:
        data = text.encode("utf-8", errors="surrogatepass")
        at = rng.randrange(len(data) + 1)
        return data[:at] + bytes([rng.choice((0x80, 0xC3, 0xFF, 0xE9))]) + data[at:]
    return text.encode("utf-8", errors="surrogatepass")


def make_mutants(count: int, seed: int = 0, repo: Path = REPO) -> list[Mutant]:
    """`count` mutants, the same ones for the same (count, seed, seed specs)."""
    seeds = seed_specs(repo)
    names = list(OPERATORS)
    mutants = []
    for index in range(count):
        rng = random.Random(f"{seed}:{index}")
        seed_name, text = seeds[index % len(seeds)]
        applied: list[str] = []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            name = rng.choice(names)
            if rng.random() > RARE.get(name, 1.0):
                name = "delete-token"
            applied.append(name)
            text = OPERATORS[name](rng, text)
        roll = rng.random()
        if roll < 0.05:
            applied.append("extends-chain")
            files = _extends_chain(rng, text)
        else:
            if roll < 0.12:
                applied.append("extends-odd")
                text = f'extends "{rng.choice(ODD_EXTENDS)}"\n' + re.sub(r'^extends "[^"\n]*"', "", text, flags=re.M)
            files = {MAIN: _encoded(rng, text)}
        mutants.append(Mutant(f"{index:04d}:{seed_name}", tuple(applied), files))
    return mutants


# --- running -----------------------------------------------------------------------------


class _Tail(io.TextIOBase):
    """A stdout that keeps only the last few thousand characters: some mutants print a lot."""

    def __init__(self, keep: int = 4000) -> None:
        self.keep, self.text, self.written = keep, "", 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.written += len(text)
        self.text = (self.text + text)[-self.keep :]
        return len(text)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


ENTRY = "mlrobust.cli:main"  # what the worker calls with each command's argv


def selftest_main(argv: list[str]) -> int:
    """A stand-in for the CLI that misbehaves on purpose (the file says how): the tests use it
    to show that the fuzzer counts a hang as a timeout and a crash as exit 2."""
    text = Path(argv[-1]).read_text()
    if "hang" in text:
        time.sleep(3600)
    if "crash" in text:
        raise RecursionError("deliberate")
    if "die" in text:
        os._exit(9)
    return 1 if "user error" in text else 0


def _worker(connection: Connection, entry: str) -> None:
    """Run the commands on each folder sent; answer (exit code per command, output tails)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not Linux
        pass
    import importlib

    import mlrobust

    module, name = entry.split(":")
    main = getattr(importlib.import_module(module), name)
    connection.send(("ready", str(Path(mlrobust.__file__).parent)))
    while True:
        try:
            folder = connection.recv()
        except EOFError:
            return
        answers = []
        for command in COMMANDS:
            out, err = _Tail(), _Tail()
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = main([*command, str(Path(folder) / MAIN)])
            except BaseException as error:  # anything escaping main is what we count
                code, err.text = 2, f"escaped main: {type(error).__name__}: {error}"[:4000]
            tail = err.text + out.text
            answers.append((int(code), tail if code not in (0, 1) or "Traceback" in tail else ""))
        connection.send(answers)


@dataclass
class Outcome:
    mutant: Mutant
    result: str  # "0", "1", "2" or "timeout"
    seconds: float
    detail: str = ""


@dataclass
class Tally:
    """What the fuzzer counted; `mlrobust` is the package folder the worker imported."""

    mlrobust: str = ""
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, result: str) -> int:
        return sum(o.result == result for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result in ("2", "timeout")]

    def table(self) -> str:
        head = f"{'tried':>7}{'exit 0':>8}{'exit 1':>8}{'exit 2':>8}{'timeouts':>10}"
        row = (
            f"{len(self.outcomes):>7}{self.count('0'):>8}{self.count('1'):>8}"
            f"{self.count('2'):>8}{self.count('timeout'):>10}"
        )
        return f"{head}\n{row}"


class _Runner:
    """One worker process at a time, replaced when it hangs or dies."""

    def __init__(self, timeout: float, entry: str = ENTRY) -> None:
        self.timeout = timeout
        self.entry = entry
        self.context = multiprocessing.get_context("spawn")  # no state inherited from the caller
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: Connection | None = None
        self.package = ""

    def start(self) -> None:
        parent, child = self.context.Pipe()
        self.process = self.context.Process(target=_worker, args=(child, self.entry), daemon=True)
        self.process.start()
        child.close()
        self.connection = parent
        try:
            if not parent.poll(120):  # imports, on a busy machine
                raise EOFError
            _, self.package = parent.recv()
        except (EOFError, OSError):
            self.stop()
            raise RuntimeError("the fuzz worker did not start (is mlrobust importable?)") from None

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join(10)
        if self.connection is not None:
            self.connection.close()
        self.process = self.connection = None

    def run(self, folder: Path) -> tuple[str, str]:
        if self.process is None:
            self.start()
        assert self.connection is not None
        self.connection.send(str(folder))
        if not self.connection.poll(self.timeout):
            self.stop()
            return "timeout", f"no answer in {self.timeout:g} s"
        try:
            answers = self.connection.recv()
        except (EOFError, OSError):
            exit_code = self.process.exitcode if self.process else None
            self.stop()
            return "2", f"the worker died (exit code {exit_code})"
        codes = [code for code, _ in answers]
        details = "\n".join(
            f"{' '.join(cmd)}: exit {code}\n{tail}" for cmd, (code, tail) in zip(COMMANDS, answers, strict=True)
        )
        if any(code not in (0, 1) for code in codes) or any(tail for _, tail in answers):
            return "2", details
        return str(max(codes)), ""


def write_mutant(mutant: Mutant, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in mutant.files.items():
        (folder / name).write_bytes(data)


def run_mutants(
    mutants: list[Mutant],
    timeout: float = 20.0,
    progress: Callable[[Outcome], None] | None = None,
    entry: str = ENTRY,
) -> Tally:
    """Run every mutant's commands; never raises for a mutant, whatever it does.

    `entry` ("module:function") is what the worker calls with each command's argv.
    """
    tally = Tally()
    runner = _Runner(timeout, entry)
    work = Path(tempfile.mkdtemp(prefix="mlrfuzz-"))
    try:
        runner.start()
        tally.mlrobust = runner.package
        for mutant in mutants:
            folder = work / mutant.name.split(":")[0]
            write_mutant(mutant, folder)
            start = time.perf_counter()
            result, detail = runner.run(folder)
            outcome = Outcome(mutant, result, time.perf_counter() - start, detail)
            tally.outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        runner.stop()
        shutil.rmtree(work, ignore_errors=True)
    return tally


def iter_report(tally: Tally, show: int) -> Iterator[str]:
    yield f"mlrobust imported from {tally.mlrobust}"
    yield tally.table()
    slowest = sorted(tally.outcomes, key=lambda o: o.seconds, reverse=True)[:3]
    yield "slowest: " + ", ".join(f"{o.mutant.name} {o.seconds:.2f}s ({'+'.join(o.mutant.operators)})" for o in slowest)
    for outcome in tally.failures[:show]:
        yield f"--- {outcome.mutant.name} [{'+'.join(outcome.mutant.operators)}]: {outcome.result}"
        yield outcome.detail.strip()[-1500:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=500, help="how many mutants (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="the mutants' seed (default 0)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per mutant (default 20)")
    parser.add_argument("--show", type=int, default=10, help="failures to print (default 10)")
    parser.add_argument(
        "--outcomes", default=None, help="also write one JSON line per mutant here (to compare two checkouts)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    tally = run_mutants(make_mutants(args.mutants, args.seed), args.timeout)
    for line in iter_report(tally, args.show):
        print(line)
    if args.outcomes:
        with open(args.outcomes, "w", encoding="utf-8") as out:
            for o in tally.outcomes:
                row = {"mutant": o.mutant.name, "operators": o.mutant.operators, "result": o.result}
                out.write(json.dumps({**row, "seconds": round(o.seconds, 3)}) + "\n")
    print(f"{time.perf_counter() - start:.0f} s in all")
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
