"""An installed (non-editable) wheel carries the grammar and finds it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from mlrobust.resources import grammar_text

from .helpers import REPO


def test_grammar_is_found_from_the_checkout_and_parses() -> None:
    from lark import Lark

    text = grammar_text()
    assert text == (REPO / "grammar" / "mlr.lark").read_text()
    Lark(text, parser="lalr")  # a grammar that does not compile fails here


def test_installed_wheel_finds_the_grammar(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("mlrobust-*.whl")
    assert "mlrobust/grammar/mlr.lark" in zipfile.ZipFile(wheel).namelist()
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # -S: no site-packages, so neither the editable install nor the checkout can answer
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from mlrobust.resources import grammar_location, grammar_text;"
        "print(grammar_location()); print(len(grammar_text()))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(target)], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    location, length = done.stdout.split()
    assert Path(location).is_relative_to(target)
    assert int(length) == len((REPO / "grammar" / "mlr.lark").read_text())
