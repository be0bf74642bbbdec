"""Syntax values -> IR pieces, field by field, collecting diagnostics instead of stopping.

Each converter returns the IR value, or None after recording why the value is unusable.
Paths resolve against the folder of the file that wrote them.
"""

from __future__ import annotations

import difflib
import glob as globbing
import math
from collections.abc import Callable
from pathlib import Path

from mlrobust.contract.span import Span
from mlrobust.contract.verifiers import CATALOGUE, LANGUAGE, Option, OptionValue, VerifierStep
from mlrobust.problem.layers import LAYERINGS
from mlrobust.spec import ir
from mlrobust.spec import syntax as s
from mlrobust.spec.diagnostics import Diagnostic

Number = int | float

# Bounds on what a spec may write; docs/spec-language.md ("Limits") documents each. A value past
# them is a mistake (1e309 is inf, a weight of 1e308 makes the size inf), never a real setting.
MAX_INTEGER = 2**31 - 1  # any integer: labels, k, seeds, budgets, rect sides, verifier options
MAX_NUMBER = 1e15  # any other number
MAX_WEIGHT = 1e6  # one layer's weight: w·ε over the whole range stays far inside float64
MAX_RANGE = 1e6  # either end of `range` (PNG images are in [0, 1]; .npy arrays may use other scales)
MAX_DURATION = 30 * 24 * 3600.0  # 30 days: past any budget, inside every timeout API


def shown(text: str, limit: int = 24) -> str:
    """A literal as a message quotes it: a 5,000-digit number must not make a 5,000-column message."""
    return text if len(text) <= limit else f"{text[: limit - 8]}…{text[-4:]} ({len(text):,} characters)"


def number_text(value: float) -> str:
    """A bound as people write it in a spec: 1e6, 0.5, 2147483647 (not 1e+06)."""
    return f"{value:g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


PROPERTY_FORMS = ("top_k", "threshold", "keep_predicted")  # what `property` takes (docs/spec-language.md)
WEIGHT_WHY = f"a layer's weight is at most {number_text(MAX_WEIGHT)}, so that w·ε stays far inside float range"
RANGE_WHY = f"range ends are within ±{number_text(MAX_RANGE)} (PNG images are in [0, 1])"


def head(value: s.Value) -> str | None:
    """The word a name or call starts with (`uniform` in `uniform(0.5)`), else None."""
    if isinstance(value, s.Name):
        return value.value
    if isinstance(value, s.Call):
        return value.name
    return None


class Converter:
    """Holds the diagnostics list every conversion appends to."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics

    def report(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint))

    def wrong_type(self, what: str, expected: str, value: s.Value, hint: str | None = None) -> None:
        self.report("wrong-type", f"{what} must be {expected}, not {s.value_kind(value)}", value.span, hint)

    # --- scalars ----------------------------------------------------------------------

    def number(
        self,
        value: s.Value,
        what: str,
        minimum: float | None = None,
        integer: bool = False,
        maximum: float | None = None,
        why: str | None = None,
    ) -> Number | None:
        """A number within [minimum, maximum] (`why`: the hint when it is above the maximum) and
        within the spec-wide bounds (finite; MAX_INTEGER, MAX_NUMBER)."""
        if isinstance(value, s.Duration):
            self.report(
                "bad-unit",
                f"{what} is a plain number, not a duration",
                value.span,
                f"write {shown(value.text.rstrip('hmins'))} without a unit",
            )
            return None
        if not isinstance(value, s.Number):
            self.wrong_type(what, "an integer" if integer else "a number", value)
            return None
        if isinstance(value.value, float) and not math.isfinite(value.value):
            self.report(
                "bad-value",
                f"{what} must be a finite number, got {shown(value.text)}",
                value.span,
                f"{shown(value.text)} is beyond float range; numbers in a spec are at most {number_text(MAX_NUMBER)}",
            )
            return None
        if integer and not isinstance(value.value, int) and abs(value.value) <= MAX_INTEGER:
            self.wrong_type(what, "an integer", value)
            return None
        if minimum is not None and value.value < minimum:
            code = "negative-value" if minimum == 0 else "bad-value"
            self.report(code, f"{what} must be at least {number_text(minimum)}, got {shown(value.text)}", value.span)
            return None
        if maximum is not None and value.value > maximum:
            message = f"{what} must be at most {number_text(maximum)}, got {shown(value.text)}"
            self.report("bad-value", message, value.span, why)
            return None
        return value.value if self.in_scale(value, what, integer) else None

    def in_scale(self, value: s.Number, what: str, integer: bool = False) -> bool:
        """Whether a number is within the spec-wide bounds (else say so): an integer past
        MAX_INTEGER overflows a C int (solver threads, seeds), a float past MAX_NUMBER is no
        setting anyone means."""
        number = value.value
        integral = integer or isinstance(number, int)
        bound = MAX_INTEGER if integral else MAX_NUMBER
        if not abs(number) <= bound:  # inf and nan included
            self.report(
                "bad-value",
                f"{what} is out of scale: {shown(value.text)}",
                value.span,
                f"integers in a spec are at most {MAX_INTEGER} in size"
                if integral
                else f"numbers in a spec are at most {number_text(MAX_NUMBER)} in size",
            )
            return False
        return True

    def duration(self, value: s.Value, what: str, minimum: float = 0.0) -> float | None:
        if isinstance(value, s.Number):
            self.report(
                "bad-unit",
                f"{what} is a duration and needs a unit",
                value.span,
                f"write {value.text}s, {value.text}min, … (units: ms, s, min, h)",
            )
            return None
        if not isinstance(value, s.Duration):
            self.wrong_type(what, "a duration (30s, 5min)", value)
            return None
        if value.seconds < minimum or (minimum == 0 and value.seconds <= 0):
            self.report("bad-value", f"{what} must be positive, got {shown(value.text)}", value.span)
            return None
        if not value.seconds <= MAX_DURATION:  # inf included
            self.report(
                "bad-value",
                f"{what} is out of scale: {shown(value.text)}",
                value.span,
                f"durations are at most 30 days ({MAX_DURATION / 3600:g}h)",
            )
            return None
        return value.seconds

    def string(self, value: s.Value, what: str) -> str | None:
        if not isinstance(value, s.String):
            self.wrong_type(what, 'a string ("...")', value)
            return None
        return value.value

    def path(self, value: s.Value, what: str, must_exist: bool = True) -> ir.FileRef | None:
        text = self.string(value, what)
        if text is None:
            return None
        try:
            path = (Path(value.span.file).parent / text).resolve()
            exists = path.exists()
        except (ValueError, OSError) as error:  # a NUL byte, a name too long, …
            self.report("bad-value", f"{what} {text!r} is not a usable path: {error}", value.span)
            return None
        if must_exist and not exists:
            self.report(
                "file-not-found",
                f"{what} {text!r} not found (looked at {path})",
                value.span,
                "paths are relative to the folder of the spec file that writes them",
            )
            return None
        return ir.FileRef(path, value.span)

    def arguments(
        self, call: s.Call, params: dict[str, Callable[[s.Value], object]], positional: tuple[str, ...] = ()
    ) -> dict[str, object] | None:
        """Match a call's arguments to named parameters; each parameter converts its value."""
        values: dict[str, object] = {}
        ok = True
        for index, argument in enumerate(call.arguments):
            if argument.name is None:
                if index >= len(positional):
                    self.report(
                        "bad-value",
                        f"{call.name}() takes at most {len(positional)} positional argument(s)",
                        argument.span,
                        f"name the arguments: {', '.join(params)}",
                    )
                    ok = False
                    continue
                name = positional[index]
            else:
                name = argument.name
            if name not in params:
                self.report(
                    "bad-value",
                    f"{call.name}() has no argument `{name}`",
                    argument.span,
                    f"it takes: {', '.join(params) or 'no arguments'}",
                )
                ok = False
                continue
            if name in values:
                self.report("duplicate-field", f"{call.name}() gets `{name}` twice", argument.span)
                ok = False
                continue
            converted = params[name](argument.value)
            if converted is None:
                ok = False
            values[name] = converted
        return values if ok else None

    # --- fields -----------------------------------------------------------------------

    def target(self, value: s.Value) -> ir.Target | None:
        if isinstance(value, s.Number) and isinstance(value.value, int):
            return ir.LabelTarget(value.value, value.span) if self.in_scale(value, "target", integer=True) else None
        if isinstance(value, s.String):
            return ir.NamedTarget(value.value, value.span)
        if isinstance(value, s.Name) and value.value in ("first_digit", "second_digit"):
            return ir.DigitTarget(0 if value.value == "first_digit" else 1, value.span)
        self.wrong_type("target", 'a label (3), a class name ("cat"), first_digit or second_digit', value)
        return None

    def mask(self, value: s.Value, what: str = "mask") -> ir.Mask | None:
        if what == "mask" and isinstance(value, s.ListValue):
            return self.mask_union(value)
        if isinstance(value, s.String):
            ref = self.path(value, f"{what} file")
            return ir.MaskFile(ref.path, value.span) if ref else None
        if isinstance(value, s.Name) and value.value == "other_digit":
            return ir.OtherDigitMask(value.span)
        if isinstance(value, s.Call) and value.name == "rect":

            def side(name: str, minimum: int) -> Callable[[s.Value], object]:
                return lambda v: self.number(v, f"rect {name}", minimum, integer=True)

            args = self.arguments(
                value,
                {
                    "top": side("top", 0),
                    "left": side("left", 0),
                    "height": side("height", 1),
                    "width": side("width", 1),
                },
                ("top", "left", "height", "width"),
            )
            if args is None:
                return None
            missing = [k for k in ("top", "left", "height", "width") if k not in args]
            if missing:
                self.report(
                    "missing-field",
                    f"rect() needs {', '.join(missing)}",
                    value.span,
                    "write rect(top = 0, left = 0, height = 10, width = 10)",
                )
                return None
            return ir.RectMask(
                int(args["top"]),
                int(args["left"]),
                int(args["height"]),  # type: ignore[call-overload]
                int(args["width"]),
                value.span,
            )  # type: ignore[call-overload]
        self.unknown_region(value, "mask", "mask", "mask.png", "other_digit")
        return None

    def mask_union(self, value: s.ListValue) -> ir.MaskUnion | None:
        """Several perturbed objects: each element is a mask of its own (not a list)."""
        if not value.items:
            self.report(
                "bad-value", "the mask list is empty", value.span, 'name at least one mask: [other_digit, "m.png"]'
            )
            return None
        parts = []
        for item in value.items:
            if isinstance(item, s.ListValue):
                self.wrong_type("mask", 'a file ("mask.png"), other_digit or rect(...) in the list', item)
                return None
            part = self.mask(item)
            if part is None:
                return None
            parts.append(part)
        return ir.MaskUnion(tuple(parts), value.span)  # type: ignore[arg-type]

    def freeze(self, value: s.Value) -> ir.Freeze | None:
        """`freeze` is written like `mask`, with `target_digit` where `mask` has `other_digit`."""
        if isinstance(value, s.Name) and value.value == "target_digit":
            return ir.TargetDigitMask(value.span)
        if isinstance(value, s.String) or (isinstance(value, s.Call) and value.name == "rect"):
            return self.mask(value, "freeze")  # type: ignore[return-value]
        self.unknown_region(value, "freeze", "freeze region", "frozen.png", "target_digit")
        return None

    def unknown_region(self, value: s.Value, key: str, what: str, example: str, named: str) -> None:
        """`mask` and `freeze` take the same forms (a file, a named region, rect(…)): a value
        that is none of them is an unknown generator when it has a name, else the wrong type."""
        name = head(value)
        if name is not None:
            self.report(
                "unknown-generator",
                f"unknown {what} `{name}`",
                value.span,
                f'write a mask file ("{example}"), {named}, or rect(top=, left=, height=, width=)',
            )
        else:
            self.wrong_type(key, f'a file ("{example}"), {named} or rect(...)', value)

    def sigmoid_threshold(self, value: s.Value, what: str) -> float | None:
        """A sigmoid score threshold: a number strictly between 0 and 1 (its logit is finite)."""
        if not isinstance(value, (s.Number, s.Duration)):
            self.wrong_type(what, "a number", value, "a threshold is a sigmoid score: a number such as 0.5")
            return None
        number = self.number(value, what)
        if number is None or not isinstance(value, s.Number):
            return None
        if not 0 < float(number) < 1:  # 0.99999999999999999 is read as 1.0
            self.report(
                "bad-value",
                f"{what} must lie strictly between 0 and 1, got {shown(value.text)}",
                value.span,
                "t is a sigmoid score: the property is logit > ln(t / (1 − t)), finite only for 0 < t < 1 "
                "(t = 0.5 is logit 0)",
            )
            return None
        return float(number)

    def output_property(self, value: s.Value) -> ir.OutputPropertySpec | None:
        """`property = top_k | threshold(t = 0.5) | keep_predicted | keep_predicted(threshold = 0.5)`."""
        name = head(value)
        call = value if isinstance(value, s.Call) else None
        if name == "top_k":
            if call is not None and self.arguments(call, {}) is None:
                return None
            return ir.TopKProperty(value.span)
        if name == "threshold":
            if call is None:
                return ir.ThresholdProperty(0.5, value.span)
            args = self.arguments(call, {"t": lambda v: self.sigmoid_threshold(v, "threshold t")}, ("t",))
            return ir.ThresholdProperty(float(args.get("t", 0.5)), value.span) if args is not None else None  # type: ignore[arg-type]
        if name == "keep_predicted":
            if call is None:
                return ir.KeepPredictedProperty(None, value.span)
            args = self.arguments(
                call, {"threshold": lambda v: self.sigmoid_threshold(v, "keep_predicted threshold")}, ("threshold",)
            )
            if args is None:
                return None
            found = args.get("threshold")
            return ir.KeepPredictedProperty(None if found is None else float(found), value.span)  # type: ignore[arg-type]
        forms = "top_k, threshold(t = 0.5), keep_predicted, or keep_predicted(threshold = 0.5)"
        if name is not None:
            self.report(
                "unknown-generator",
                f"unknown property `{name}`",
                value.span,
                _did_you_mean(name, PROPERTY_FORMS) + f"write {forms}",
            )
            return None
        self.wrong_type("property", "a property name or call", value, f"write {forms}")
        return None

    def _weight_list(self, value: s.Value, what: str, maximum: float = MAX_WEIGHT) -> tuple[float, ...] | None:
        if not isinstance(value, s.ListValue):
            self.wrong_type(what, "a list of numbers", value)
            return None
        if not value.items:
            self.report("bad-value", f"{what} is empty", value.span)
            return None
        numbers = [
            self.number(item, f"each of {what}", 0, maximum=maximum, why=WEIGHT_WHY if maximum == MAX_WEIGHT else None)
            for item in value.items
        ]
        if any(n is None for n in numbers):
            return None
        return tuple(float(n) for n in numbers)  # type: ignore[arg-type]

    def weights(self, value: s.Value) -> ir.Weights | None:
        if isinstance(value, s.ListValue) and _per_object_list(value):
            return self.per_object_weights(value)
        return self.one_object_weights(value)

    def per_object_weights(self, value: s.ListValue) -> ir.PerObjectWeights | None:
        """`[[1, 0.5], exponential(base = 0.5)]`: one weights form per object (`layers = per_object`)."""
        parts = []
        for index, item in enumerate(value.items):
            if not isinstance(item, (s.ListValue, s.Name, s.Call)):
                self.wrong_type(
                    f"object {index}'s weights",
                    "a list or a generator such as uniform",
                    item,
                    "a list of lists gives each object its own weights: [[1, 0.5, …], exponential(base = 0.5)]",
                )
                return None
            part = self.one_object_weights(item)
            if part is None:
                return None
            parts.append(part)
        return ir.PerObjectWeights(tuple(parts), value.span)

    def one_object_weights(self, value: s.Value) -> ir.OneObjectWeights | None:
        if isinstance(value, s.ListValue):
            values = self._weight_list(value, "weights")
            return ir.ExplicitWeights(values, None, value.span) if values else None
        name = head(value)
        weight = lambda what: lambda v: self.number(v, what, 0, maximum=MAX_WEIGHT, why=WEIGHT_WHY)  # noqa: E731
        if name == "object_only" and isinstance(value, s.Name):
            return ir.ObjectOnlyWeights(value.span)
        if name == "uniform":
            if isinstance(value, s.Name):
                return ir.UniformWeights(1.0, value.span)
            args = self.arguments(value, {"value": weight("uniform value")}, ("value",))  # type: ignore[arg-type]
            return ir.UniformWeights(float(args.get("value", 1.0)), value.span) if args is not None else None  # type: ignore[arg-type]
        if name == "linear" and isinstance(value, s.Call):
            args = self.arguments(
                value, {"start": weight("linear start"), "end": weight("linear end")}, ("start", "end")
            )
            if args is None:
                return None
            return ir.LinearWeights(float(args.get("start", 1.0)), float(args.get("end", 0.0)), value.span)  # type: ignore[arg-type]
        if name == "exponential" and isinstance(value, s.Call):
            args = self.arguments(value, {"base": weight("exponential base")}, ("base",))
            return ir.ExponentialWeights(float(args.get("base", 0.5)), value.span) if args is not None else None  # type: ignore[arg-type]
        if name == "padded" and isinstance(value, s.Call):
            args = self.arguments(
                value,
                {"values": lambda v: self._weight_list(v, "padded values"), "fill": weight("padded fill")},
                ("values", "fill"),
            )
            if args is None:
                return None
            if "values" not in args or "fill" not in args:
                self.report(
                    "missing-field",
                    "padded() needs a list and a fill value",
                    value.span,
                    "write padded([1, 0.5], fill = 0)",
                )
                return None
            return ir.ExplicitWeights(args["values"], float(args["fill"]), value.span)  # type: ignore[arg-type]
        if name is not None:
            self.report(
                "unknown-generator",
                f"unknown weights `{name}`",
                value.span,
                "write a list [1, 0.5, …], uniform, uniform(0.5), linear(start = 1, end = 0), "
                "exponential(base = 0.5), object_only, or padded([…], fill = 0)",
            )
            return None
        self.wrong_type("weights", "a list or a generator such as uniform", value)
        return None

    def cutting(self, value: s.Value) -> ir.Cutting | None:
        if isinstance(value, s.ListValue) and _per_object_list(value):
            return self.per_object_cutting(value)
        if isinstance(value, s.ListValue):
            values = self._weight_list(value, "cutting weights", maximum=1.0)
            return ir.ExplicitCutting(values, value.span) if values else None
        if isinstance(value, s.Name) and value.value == "fixed":
            return ir.FixedCutting(value.span)
        if isinstance(value, s.Name) and value.value == "sensitivity":
            return ir.SensitivityCutting(value.span)
        if isinstance(value, (s.Name, s.Call)):
            self.report(
                "unknown-generator",
                f"unknown cutting strategy `{head(value)}`",
                value.span,
                "write fixed, sensitivity, or a list of weights in [0, 1]",
            )
            return None
        self.wrong_type("cutting", "fixed, sensitivity or a list", value)
        return None

    def per_object_cutting(self, value: s.ListValue) -> ir.ExplicitCutting | None:
        """`[[1, 0.9, …], [1, 0.5, …]]`: one list of cutting weights per object (`layers = per_object`)."""
        parts = []
        for index, item in enumerate(value.items):
            if not isinstance(item, s.ListValue):
                self.wrong_type(
                    f"object {index}'s cutting weights",
                    "a list of numbers",
                    item,
                    "a per-object cutting is one list per object: [[1, 0.9, …], [1, 0.5, …]]",
                )
                return None
            values = self._weight_list(item, f"object {index}'s cutting weights", maximum=1.0)
            if values is None:
                return None
            parts.append(values)
        flat = tuple(v for part in parts for v in part)
        return ir.ExplicitCutting(flat, value.span, tuple(len(part) for part in parts))

    def layering(self, value: s.Value) -> str | None:
        """`layers = union | per_object` (problem/layers.py)."""
        if isinstance(value, s.Name) and value.value in LAYERINGS:
            return value.value
        forms = "write layers = union (distance to all objects, the default) or layers = per_object"
        if isinstance(value, s.Name):
            self.report(
                "bad-value",
                f"unknown layering `{value.value}`",
                value.span,
                _did_you_mean(value.value, LAYERINGS) + forms,
            )
            return None
        self.wrong_type("layers", "union or per_object", value, forms)
        return None

    def _option(self, verifier: str, option: Option, value: s.Value) -> OptionValue | None:
        what = f"{verifier} option `{option.name}`"
        if option.kind == "choice":
            if not isinstance(value, s.Name) or value.value not in option.choices:
                shown = value.value if isinstance(value, (s.Name, s.String)) else s.value_kind(value)
                self.report(
                    "bad-option",
                    f"{what} cannot be {shown!s}",
                    value.span,
                    f"choose one of: {', '.join(option.choices)}",
                )
                return None
            return value.value
        if option.kind == "duration":
            seconds = self.duration(value, what)
            return seconds
        if option.kind == "string":
            if not isinstance(value, s.String) or not value.value.strip():
                self.wrong_type(what, 'a non-empty string ("…")', value)
                return None
            return value.value
        if option.kind == "bool":
            if not isinstance(value, s.Boolean):
                self.wrong_type(what, "true or false", value)
                return None
            return value.value
        number = self.number(value, what, option.minimum, integer=option.kind == "int")
        return float(number) if number is not None and option.kind == "float" else number

    def verifier_step(self, value: s.Value) -> VerifierStep | None:
        if isinstance(value, s.Name):
            call = s.Call(value.value, (), value.span, value.span)
        elif isinstance(value, s.Call):
            call = value
        else:
            self.wrong_type("a chain step", "a verifier such as attack(steps = 50)", value)
            return None
        info = CATALOGUE.get(call.name) if call.name in LANGUAGE else None
        if info is None:
            close = difflib.get_close_matches(call.name, LANGUAGE, n=1)
            did = f"did you mean {close[0]}? " if close else ""
            self.report(
                "unknown-verifier",
                f"unknown verifier `{call.name}`",
                call.name_span,
                f"{did}verifiers: {', '.join(LANGUAGE)}",
            )
            return None
        chosen: dict[str, OptionValue] = {}
        ok = True
        for argument in call.arguments:
            option = info.option(argument.name) if argument.name else None
            if argument.name is None:
                self.report(
                    "bad-option",
                    f"{call.name} options are named",
                    argument.span,
                    f"write e.g. {call.name}({info.options[0].name} = …)",
                )
                ok = False
            elif option is None:
                self.report(
                    "unknown-option",
                    f"{call.name} has no option `{argument.name}`",
                    argument.span,
                    "options: " + "; ".join(o.describe() for o in info.options),
                )
                ok = False
            elif argument.name in chosen:
                self.report("duplicate-field", f"{call.name} option `{argument.name}` is given twice", argument.span)
                ok = False
            else:
                converted = self._option(call.name, option, argument.value)
                if converted is None:
                    ok = False
                else:
                    chosen[argument.name] = converted
        missing = [name for name in info.required if name not in chosen]
        if missing:
            self.report(
                "bad-option",
                f"{call.name} needs {', '.join(f'`{name}`' for name in missing)}",
                call.span,
                "; ".join(o.describe() for o in info.options if o.name in missing),
            )
            ok = False
        if not ok:
            return None
        options = info.resolve(chosen)
        unavailable = info.available(options)
        if unavailable is not None:
            blamed = next((a.span for a in call.arguments if a.name == unavailable.option), call.span)
            self.report("solver-unavailable", unavailable.reason, blamed, unavailable.fix)
            return None
        return VerifierStep(call.name, tuple(options.items()), call.span)

    def chain(self, value: s.Value) -> tuple[VerifierStep, ...] | None:
        steps_syntax: tuple[s.Value, ...] = value.steps if isinstance(value, s.Chain) else (value,)
        steps = [self.verifier_step(step) for step in steps_syntax]
        if any(step is None for step in steps):
            return None
        chain = tuple(step for step in steps if step is not None)
        if not any(step.info.is_sound(dict(step.options)) for step in chain):
            self.report(
                "no-sound-verifier",
                "this chain has no sound verifier, so it can never prove ROBUST",
                value.span,
                "add bounds(…) or milp(…) after the attack",
            )
        return chain

    def value_range(self, value: s.Value) -> tuple[float, float] | None:
        if not isinstance(value, s.ListValue) or len(value.items) != 2:
            self.wrong_type("range", "a list of two numbers [lo, hi]", value)
            return None
        lo, hi = (
            self.number(item, "range bound", -MAX_RANGE, maximum=MAX_RANGE, why=RANGE_WHY) for item in value.items
        )
        if lo is None or hi is None:
            return None
        if not lo < hi:
            self.report("bad-value", f"range must have lo < hi, got [{lo}, {hi}]", value.span)
            return None
        return float(lo), float(hi)

    # --- sweep --------------------------------------------------------------------------

    def path_list(self, value: s.Value, what: str) -> tuple[ir.FileRef, ...] | None:
        if isinstance(value, s.String):
            ref = self.path(value, what)
            return (ref,) if ref else None
        if isinstance(value, s.Call) and value.name == "glob":
            args = self.arguments(value, {"pattern": lambda v: self.string(v, "glob pattern")}, ("pattern",))
            if args is None or "pattern" not in args:
                return None
            folder = Path(value.span.file).parent
            try:
                found = sorted(Path(p).resolve() for p in globbing.glob(str(folder / str(args["pattern"]))))
            except (ValueError, OSError) as error:
                self.report("bad-value", f"glob({args['pattern']!r}) is not a usable pattern: {error}", value.span)
                return None
            if not found:
                self.report("empty-sweep", f"glob({args['pattern']!r}) matches no file (in {folder})", value.span)
                return None
            return tuple(ir.FileRef(p, value.span) for p in found)
        if isinstance(value, s.ListValue):
            refs = [self.path(item, what) for item in value.items]
            if any(r is None for r in refs):
                return None
            if not refs:
                self.report("empty-sweep", f"the list of {what}s is empty", value.span)
                return None
            return tuple(r for r in refs if r is not None)
        self.wrong_type(what + "s", 'a path, a list of paths or glob("pattern")', value)
        return None

    def axis_items(self, value: s.Value, field: str, example: str) -> tuple[s.Value, ...] | None:
        """The elements of a sweep axis (`methods`, `cuttings`): a non-empty list."""
        if not isinstance(value, s.ListValue):
            self.wrong_type(field, "a list", value, f"write {field} = {example}")
            return None
        if not value.items:
            self.report("empty-sweep", f"the list of {field} is empty", value.span, f"write {field} = {example}")
            return None
        return value.items

    def cutting_axis(self, value: s.Value) -> tuple[ir.Cutting, ...] | None:
        """`cuttings = [fixed, sensitivity, [1, 0.5, …]]`: each element any form `cutting` takes."""
        items = self.axis_items(value, "cuttings", "[fixed, sensitivity]")
        if items is None:
            return None
        if any(isinstance(item, s.Number) for item in items):
            first = next(item for item in items if isinstance(item, s.Number))
            self.wrong_type(
                "each of cuttings",
                "fixed, sensitivity or a list of weights",
                first,
                "an explicit cutting is a list inside the list: cuttings = [fixed, [1, 0.5, 0.25]]",
            )
            return None
        cuttings = [self.cutting(item) for item in items]
        if any(c is None for c in cuttings):
            return None
        found = tuple(c for c in cuttings if c is not None)
        if self.duplicates(
            [item.span for item in items], [repr(c) for c in found], "cuttings", [_cutting_text(c) for c in found]
        ):
            return None
        return found

    def duplicates(self, spans: list[Span], keys: list[str], field: str, names: list[str] | None = None) -> bool:
        """Report each element of an axis whose key repeats an earlier one's
        (`duplicate-axis-value`): two instances would ask the same question. `names`: how the
        messages name the elements (their keys by default). True when there was one."""
        seen: set[str] = set()
        repeated = False
        for span, key, name in zip(spans, keys, names or keys, strict=True):
            if key in seen:
                self.report(
                    "duplicate-axis-value",
                    f"{field} lists {name} twice",
                    span,
                    f"list each of {field} once: a repeat would ask the same question again",
                )
                repeated = True
            seen.add(key)
        return repeated

    def canvas_selection(self, value: s.Value) -> tuple[str, ...] | tuple[int, int] | str | None:
        """A list of canvas ids, rows(start, stop), or `all` (resolved against the index later)."""
        if isinstance(value, s.Name) and value.value == "all":
            return "all"
        if isinstance(value, s.Call) and value.name == "rows":
            row = lambda v: self.number(v, "rows bound", 0, integer=True)  # noqa: E731
            args = self.arguments(value, {"start": row, "stop": row}, ("start", "stop"))
            if args is None or "start" not in args or "stop" not in args:
                if args is not None:
                    self.report("missing-field", "rows() needs start and stop", value.span, "write rows(0, 20)")
                return None
            start, stop = int(args["start"]), int(args["stop"])  # type: ignore[call-overload]
            if stop <= start:
                self.report(
                    "empty-sweep",
                    f"rows({start}, {stop}) selects no row",
                    value.span,
                    "rows(start, stop) selects rows start … stop-1",
                )
                return None
            return (start, stop)
        if isinstance(value, s.ListValue):
            ids = [self.string(item, "canvas id") for item in value.items]
            if any(i is None for i in ids):
                return None
            if not ids:  # else the sweep would quietly fall back to the spec's own canvas
                self.report(
                    "empty-sweep",
                    "the list of canvases is empty",
                    value.span,
                    'list canvas ids (["test/0000"]), or write rows(0, 20) or all',
                )
                return None
            return tuple(i for i in ids if i is not None)
        self.wrong_type("canvases", "a list of canvas ids, rows(start, stop) or all", value)
        return None


def _per_object_list(value: s.ListValue) -> bool:
    """Whether a weights or cutting list is one entry per object: its first element is a list,
    a name or a call, where a list of one object's weights starts with a number."""
    return bool(value.items) and isinstance(value.items[0], (s.ListValue, s.Name, s.Call))


def _cutting_text(cutting: ir.Cutting) -> str:
    """A cutting as a message names it: `fixed`, `sensitivity`, or its list (of lists)."""
    if isinstance(cutting, ir.ExplicitCutting):
        shown = ["[" + ", ".join(number_text(v) for v in part) + "]" for part in cutting.parts]
        return shown[0] if cutting.per_object is None else "[" + ", ".join(shown) + "]"
    return cutting.name


def _did_you_mean(name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean `{close[0]}`? " if close else ""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    did = f"did you mean `{close[0]}`? " if close else ""
    return f"{did}{kind}: {', '.join(known)}"
