"""`mlrobust verify MODEL.onnx PROP.vnnlib`: the VNN-COMP interface.

With `--timeout`, the work runs in a forked child and this process only supervises it: at the
limit the child is killed, whatever it is inside (HiGHS's root LP, a long CROWN pass), and the
result file says `timeout`. The parent reads the property first (torch-free), so a malformed
file costs no model loading and is a user error with file:line:col.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console

from mlrobust.errors import ExitCode, MlrobustError, UserError

COLOURS = {"sat": "red", "unsat": "green", "timeout": "yellow", "unknown": "yellow"}
GRACE = 0.5  # seconds the child gets past its own deadline before it is killed
STOP_GRACE = 0.3  # seconds between asking the child to stop (SIGTERM) and killing it
DEFAULT_CHAIN = "attack() -> bounds() -> milp()"


def _work(connection, model: Path, prop, chain, deadline: float | None) -> None:  # type: ignore[no-untyped-def]
    """In the child: answer, and send back the outcome as JSON, or the error."""
    from mlrobust.verify.external import stop_running_tools
    from mlrobust.vnnlib.verify import outcome_json, verify_property

    def stop(signum: int, frame: object) -> None:  # the supervisor's time limit: take external tools along
        stop_running_tools()
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)

    try:
        outcome = verify_property(model, prop, chain, deadline)
        connection.send({"outcome": outcome_json(outcome, model, prop.file, None)})
    except MlrobustError as error:
        connection.send(
            {"error": error.message, "hint": getattr(error, "hint", None), "user": isinstance(error, UserError)}
        )
    except BaseException:  # a bug: reported by the parent as an internal error
        connection.send({"error": traceback.format_exc(), "hint": None, "user": False})
    finally:
        connection.close()


def _supervised(model: Path, prop, chain, timeout: float) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    """The child's message, or None when the time limit passed first (the child is killed)."""
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    # the child's own deadline, on its perf_counter (the same clock, forked)
    child = context.Process(target=_work, args=(send, model, prop, chain, started + max(timeout - GRACE, 0.0)))
    child.start()
    send.close()
    try:
        if receive.poll(max(timeout - (time.perf_counter() - started), 0.0)):
            try:
                return receive.recv()  # type: ignore[no-any-return]
            except EOFError:  # the child died without a word (killed from outside, out of memory)
                return {"error": f"the verifying process ended abruptly (exit code {child.exitcode})", "user": False}
        return None
    finally:
        if child.is_alive():
            os.kill(child.pid, signal.SIGTERM)  # type: ignore[arg-type]  # it stops the tools it started
            child.join(STOP_GRACE)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]  # inside C code that holds on
        child.join()
        receive.close()


def verify(args: argparse.Namespace) -> ExitCode:
    from mlrobust.spec.check import chain_on_device, parse_chain
    from mlrobust.vnnlib.parse import load_vnnlib
    from mlrobust.vnnlib.result import write_result

    started = time.perf_counter()
    console = Console(stderr=args.json)
    model, prop_path = Path(args.model), Path(args.property)
    if not model.is_file():
        raise UserError(f"model file not found: {model}")
    prop = load_vnnlib(prop_path)
    chain = chain_on_device(parse_chain(args.chain or DEFAULT_CHAIN), args.device)
    if args.timeout is None:
        from mlrobust.vnnlib.verify import outcome_json, verify_property

        outcome = verify_property(model, prop, chain)
        payload = outcome_json(outcome, model, prop_path, None)
    else:
        message = _supervised(model, prop, chain, args.timeout)
        if message is None:
            payload = {
                "schema": "mlrobust.verify/1",
                "result": "timeout",
                "summary": f"timeout: the {args.timeout:g} s limit passed (the verifying process was stopped)",
                "model": str(model.resolve()),
                "property": str(prop_path.resolve()),
                "timeout": args.timeout,
                "seconds": round(time.perf_counter() - started, 4),
                "cases": [],
                "witness": None,
            }
        elif "error" in message:
            if message["user"]:
                raise UserError(message["error"], hint=message.get("hint"))
            raise RuntimeError(f"internal error in the verifying process:\n{message['error']}")
        else:
            payload = message["outcome"]
            payload["timeout"] = args.timeout
    witness = payload.get("witness")
    if args.out:
        write_result(
            Path(args.out),
            payload["result"],
            witness["X"] if witness else None,
            witness["Y"] if witness else None,
        )
    if args.json:
        print(json.dumps(payload, indent=2))
    colour = COLOURS[payload["result"]]
    console.print(
        f"[bold {colour}]{payload['result']}[/] {model.name} {prop_path.name}: "
        f"{payload['summary'].split(': ', 1)[-1]}" + (f" → {args.out}" if args.out else ""),
        highlight=False,
        soft_wrap=True,
    )
    return ExitCode.OK
