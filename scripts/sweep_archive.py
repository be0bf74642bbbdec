"""Pack the sweeps behind docs/results.md into docs/results/sweeps.tar.gz, or unpack them.

Usage:
  python scripts/sweep_archive.py pack [FOLDER ...] [--archive docs/results/sweeps.tar.gz]
  python scripts/sweep_archive.py unpack [--archive docs/results/sweeps.tar.gz] [--into runs]

The sweep folders (runs/, ignored by git) do not outlive a checkout; the archive does. It
holds each sweep's manifest and every done instance's result.json (mlrobust/sweep_archive.py),
which is all `mlrobust report` reads and all a rerun of the sweep reuses. So on a fresh
checkout, `unpack` and then either regenerate the report
(`mlrobust report runs/thesis_experiment runs/thesis_style_cutting --out docs/results.md`)
or rerun the sweep's command to finish what an earlier session left (done instances are
skipped). `pack` after a sweep (or a part of one) and commit the archive.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from mlrobust.cli import print_error
from mlrobust.errors import UserError
from mlrobust.sweep_archive import pack, unpack

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "docs" / "results" / "sweeps.tar.gz"
SWEEPS = (REPO / "runs" / "thesis_experiment", REPO / "runs" / "thesis_style_cutting")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packer = commands.add_parser("pack")
    packer.add_argument("folders", nargs="*", type=Path, default=[f for f in SWEEPS if f.is_dir()])
    packer.add_argument("--archive", type=Path, default=ARCHIVE)
    unpacker = commands.add_parser("unpack")
    unpacker.add_argument("--archive", type=Path, default=ARCHIVE)
    unpacker.add_argument("--into", type=Path, default=REPO / "runs")
    args = parser.parse_args()
    try:
        if args.command == "pack":
            if not args.folders:
                raise UserError("no sweep folder to pack", hint="name them, or run the thesis sweeps into runs/ first")
            packed = pack(args.folders, args.archive)
            print(f"{packed.archive}: {packed.sweeps} sweeps, {packed.results} results, {packed.size / 1e6:.2f} MB")
        else:
            unpacked = unpack(args.archive, args.into)
            print(f"{len(unpacked.written)} files written under {args.into}")
            for path in unpacked.kept:
                print(f"kept (differs from the archive, newer answers are not overwritten): {path}")
    except UserError as error:
        print_error(Console(stderr=True, highlight=False), error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
