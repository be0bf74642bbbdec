"""The `mlrobust` command line: argument parsing, dispatch and the error boundary.

Handlers live in `mlrobust.commands` and are imported lazily, so `mlrobust --help` does not
pay for importing torch. Every exception that escapes a handler is turned into a message and
an exit code here (see `mlrobust.errors`), never a traceback unless --debug asks for one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from mlrobust import __version__
from mlrobust.contract.methods import DESCRIPTION, METHODS
from mlrobust.errors import ExitCode, MlrobustError, UserError, exit_code_for


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad flags; for us that is a user error (1)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


EPS_HELP = (
    "one ε for every layer (0.05), one per layer (0.1,0.05,…), or under `layers = per_object` "
    "one part per object separated by / (0.1,0.05/0.02)"
)


def non_negative_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text!r}")
    return value


def add_device_option(parser: argparse.ArgumentParser) -> None:
    from mlrobust.contract.verifiers import DEVICES

    parser.add_argument(
        "--device",
        choices=DEVICES,
        default=None,
        help="where the chain's bound engines (bab) run, overriding the spec's `device` options",
    )


def add_force_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty output folder that holds no mlrobust run or sweep (refused without it)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlrobust",
        description="Maximal robust layered neighborhoods for multi-label image classifiers.",
        epilog="Exit codes: 0 done, 1 user error, 2 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"mlrobust {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="search for the maximal robust layered neighborhood of a spec")
    run.add_argument("spec", help="the .mlr spec")
    run.add_argument("--out", default=None, help="output folder (default: the spec's `output`)")
    run.add_argument("--instance", type=non_negative_int, default=None, help="which instance of a sweep spec")
    run.add_argument("--json", action="store_true", help="print the result JSON to stdout")
    run.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help=f"{DESCRIPTION}; overrides the spec's search {{ method = … }} (an error with a sweep {{ methods = … }})",
    )
    run.add_argument(
        "--start-from",
        default=None,
        metavar="RESULT",
        help="also start the search from the ε* of a previous run's result.json (e.g. of a stronger property "
        "on the same image and mask), once the chain proves it",
    )
    run.add_argument(
        "--export-queries",
        default=None,
        metavar="DIR",
        help="also write every query the search asked as ONNX + VNN-LIB pairs (both forms) into DIR",
    )
    add_force_option(run)
    run.set_defaults(handler="mlrobust.commands.run:run")
    add_device_option(run)

    sweep = commands.add_parser(
        "sweep", help="run every instance of a spec (models × images) in parallel; a rerun resumes"
    )
    sweep.add_argument("spec", help="the .mlr spec (its `sweep { … }` block lists the models and images)")
    sweep.add_argument("--out", default=None, help="output folder (default: the spec's `output`)")
    sweep.add_argument(
        "--executor", choices=("process", "dask"), default="process", help="a local process pool, or Dask"
    )
    sweep.add_argument("--workers", type=positive_int, default=None, help="parallel runs (default: the CPU count)")
    sweep.add_argument(
        "--scheduler", default=None, help="a Dask scheduler address (tcp://host:8786); default: a LocalCluster"
    )
    sweep.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="as for `run`: the search or a baseline (an error when the spec's sweep has `methods`)",
    )
    sweep.add_argument("--json", action="store_true", help="print the manifest (sweep.json) to stdout")
    add_force_option(sweep)
    sweep.set_defaults(handler="mlrobust.commands.sweep:sweep")
    check = commands.add_parser("check", help="run one verification query of a spec at an epsilon vector")
    check.add_argument("spec", help="the .mlr spec")
    check.add_argument("--eps", required=True, help=EPS_HELP)
    check.add_argument("--instance", type=non_negative_int, default=None, help="which instance of a sweep spec")
    check.add_argument("--json", action="store_true", help="print one JSON object (docs/result-schema.md)")
    check.add_argument("--out", default=None, help="folder for a counterexample (default: the spec's output)")
    check.set_defaults(handler="mlrobust.commands.check:check")
    add_device_option(check)

    verify = commands.add_parser(
        "verify", help="answer a VNN-LIB property about an ONNX model (the VNN-COMP interface: sat / unsat)"
    )
    verify.add_argument("model", help="the ONNX model")
    verify.add_argument("property", help="the VNN-LIB 1.0 property: the unsafe region (docs/vnnlib.md)")
    verify.add_argument(
        "--timeout", type=positive_seconds, default=None, help="a hard wall-clock limit in seconds (then: timeout)"
    )
    verify.add_argument("--out", default=None, help="write the VNN-COMP result file here (sat + witness / unsat / …)")
    verify.add_argument(
        "--chain", default=None, help='the verifier chain in spec syntax (default: "attack() -> bounds() -> milp()")'
    )
    verify.add_argument("--json", action="store_true", help="print the answer, the timings and the witness as JSON")
    verify.set_defaults(handler="mlrobust.commands.verify:verify")
    add_device_option(verify)

    export = commands.add_parser(
        "export", help="write one query of a spec as an ONNX + VNN-LIB pair, for any VNN-COMP verifier"
    )
    export.add_argument("spec", help="the .mlr spec")
    export.add_argument("--eps", required=True, help=EPS_HELP)
    export.add_argument("--out", required=True, help="the folder (pairs are named by hash; index.json lists them)")
    export.add_argument("--instance", type=non_negative_int, default=None, help="which instance of a sweep spec")
    export.add_argument(
        "--form",
        choices=("dnf", "head", "both"),
        default="both",
        help="dnf: the model as it is, the top-k property as a disjunction; head: a margin head on the model "
        "and one constraint (default: both)",
    )
    export.set_defaults(handler="mlrobust.commands.export:export")

    report = commands.add_parser(
        "report", help="the experiment's Markdown report and figures from a sweep's folder (docs/results.md)"
    )
    report.add_argument(
        "sweep_dirs",
        nargs="+",
        metavar="SWEEP_DIR",
        help="the folder `mlrobust sweep` wrote (it holds sweep.json); several are reported together",
    )
    report.add_argument(
        "--out",
        default=None,
        help="the Markdown file (default: report.md in the first SWEEP_DIR); figures go in a folder of its name",
    )
    report.set_defaults(handler="mlrobust.commands.report:report")
    lint = commands.add_parser("lint", help="check .mlr spec files and print diagnostics")
    lint.add_argument("paths", nargs="+", metavar="FILE|DIR", help="spec files, or folders searched for *.mlr")
    lint.add_argument("--format", choices=("human", "json", "sarif"), default="human", help="output format")
    lint.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    lint.set_defaults(handler="mlrobust.commands.spec:lint")
    fmt = commands.add_parser("fmt", help="format .mlr spec files canonically, in place")
    fmt.add_argument("paths", nargs="+", metavar="FILE|DIR")
    fmt_mode = fmt.add_mutually_exclusive_group()
    fmt_mode.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    fmt_mode.add_argument("--diff", action="store_true", help="change nothing; print the changes as a diff")
    fmt.set_defaults(handler="mlrobust.commands.spec:fmt")

    data = commands.add_parser("data", help="build and inspect Double-MNIST canvases")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser, required=True)
    build = data_commands.add_parser("build", help="build canvases, masks and an index from real MNIST digits")
    build.add_argument(
        "--out", default=None, help="output folder (default: data/double_mnist, or data/triple_mnist with --digits 3)"
    )
    build.add_argument(
        "--digits",
        type=int,
        choices=(2, 3),
        default=2,
        help="digits per canvas: 2 (Double-MNIST, 64x64) or 3 (Triple-MNIST, 84x84) (default: 2)",
    )
    build.add_argument("--seed", type=non_negative_int, default=0, help="canvas seed (default: 0)")
    build.add_argument("--train", type=non_negative_int, default=0, help="training canvases (default: 0)")
    build.add_argument("--test", type=non_negative_int, default=200, help="test canvases (default: 200)")
    build.add_argument(
        "--max-uses", type=positive_int, default=4, help="most canvases one source digit may appear in (default: 4)"
    )
    build.set_defaults(handler="mlrobust.commands.data:build")
    show = data_commands.add_parser("show", help="summarise a Double-MNIST folder")
    show.add_argument("folder", nargs="?", default="data/double_mnist")
    show.set_defaults(handler="mlrobust.commands.data:show")

    models = commands.add_parser("models", help="train, inspect and check the Double- and Triple-MNIST classifiers")
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=_Parser, required=True)
    train = model_commands.add_parser("train", help="train, export and evaluate classifiers (writes model cards)")
    train.add_argument("--recipe", choices=("none", "l0", "pgd", "all"), default="all")
    train.add_argument("--out", default="models", help="output folder (default: models)")
    train.add_argument("--seed", type=non_negative_int, default=0, help="training seed (default: 0)")
    train.add_argument("--threads", type=positive_int, default=2, help="torch threads (default: 2)")
    train.add_argument(
        "--digits",
        type=int,
        choices=(2, 3),
        default=2,
        help="digits per canvas: 2 trains double_mnist_<recipe>, 3 triple_mnist_<recipe> (default: 2)",
    )
    train.set_defaults(handler="mlrobust.commands.models:train")
    mshow = model_commands.add_parser("show", help="print the model cards")
    mshow.add_argument("folder", nargs="?", default="models")
    mshow.set_defaults(handler="mlrobust.commands.models:show")
    mevaluate = model_commands.add_parser(
        "evaluate", help="recompute the accuracy and PGD accuracy in the model cards of committed models"
    )
    mevaluate.add_argument("folder", nargs="?", default="models")
    mevaluate.set_defaults(handler="mlrobust.commands.models:evaluate")
    mcheck = model_commands.add_parser(
        "check", help="re-check the committed models: sha256, onnxruntime accuracy on committed canvases"
    )
    mcheck.add_argument("folder", nargs="?", default="models")
    mcheck.add_argument(
        "--data",
        default=None,
        help="a canvas folder to measure on (default: data/double_mnist for two-digit models, "
        "data/triple_mnist for three-digit ones)",
    )
    mcheck.set_defaults(handler="mlrobust.commands.models:check")
    return parser


def _dispatch(args: argparse.Namespace) -> ExitCode:
    module_name, function_name = args.handler.split(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    result: ExitCode = handler(args)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    errors = Console(stderr=True, highlight=False)
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return ExitCode.USER_ERROR
        return int(_dispatch(args))
    except MlrobustError as error:
        diagnostics = getattr(error, "diagnostics", None)
        if getattr(args, "json", False):
            _print_error_json(error, diagnostics)
        if diagnostics:  # a SpecError: show every diagnostic as lint does
            from mlrobust.spec.report import print_human

            print_human(errors, diagnostics)
            return int(error.exit_code)
        print_error(errors, error)
        return int(error.exit_code)
    except KeyboardInterrupt:
        errors.print("interrupted")
        return int(ExitCode.INTERRUPTED)
    except OSError as error:
        if error.filename is None:
            return _internal(errors, error, debug)
        # a path the machine refuses (no such folder, no permission, a full disk): the user's to mend
        where, reason = escape(str(error.filename)), escape(error.strerror or str(error))
        errors.print(f"[bold red]error:[/] cannot write or read {where}: {reason}", soft_wrap=True)
        errors.print("[bold]hint:[/] check the path and its permissions (`--out DIR` chooses where results go)")
        return int(ExitCode.USER_ERROR)
    except Exception as error:  # the boundary: anything unexpected is our bug
        return _internal(errors, error, debug)


def print_error(console: Console, error: MlrobustError) -> None:
    """`error: …` and `hint: …`, as every command prints a user's error (the project's scripts
    too, so a developer sees one format)."""
    console.print(f"[bold red]error:[/] {escape(error.message)}", soft_wrap=True)
    if error.hint:
        console.print(f"[bold]hint:[/] {escape(error.hint)}", soft_wrap=True)


def _print_error_json(error: MlrobustError, diagnostics: list | None) -> None:
    """A command asked for JSON still gets JSON when it fails on bad input: a script reading
    stdout sees the diagnostics (as `lint --format json` gives them), not an empty stream."""
    import json

    from mlrobust.spec.report import as_json

    payload = {
        "schema": "mlrobust.error/1",
        "exit_code": int(error.exit_code),
        "message": error.message,
        "hint": error.hint,
        "diagnostics": as_json(diagnostics or []),
    }
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def _internal(errors: Console, error: Exception, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    errors.print(f"[bold red]internal error:[/] {type(error).__name__}: {escape(str(error))}", soft_wrap=True)
    errors.print("this is a bug in mlrobust; rerun with --debug for the traceback and report it")
    return int(exit_code_for(error))
