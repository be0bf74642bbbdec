"""The compile stage: a checked spec and one of its instances -> a Plan (or a Problem).

Everything the search needs is decided here, once: the network loaded and checked against
onnxruntime, the image as onnxruntime reads it, the layers of the mask, the weight and cutting
vectors as arrays, the chain the method asks, the budget, and the two hashes that say when an
earlier answer can be reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from mlrobust.contract.methods import METHOD_TABLE, Method
from mlrobust.contract.verifiers import CATALOGUE, VerifierStep
from mlrobust.errors import TargetNotInTopK, UserError
from mlrobust.nn.network import (
    ORT_TOLERANCE,
    Network,
    NetworkMismatch,
    load_network,
    max_difference_to_onnxruntime,
    onnxruntime_logits,
)
from mlrobust.plan import Plan, SearchBudget
from mlrobust.problem.problem import Problem
from mlrobust.problem.property import AboveThreshold, KeepTopK, OutputProperty, clean_top_k, predicted_above
from mlrobust.search.cutting import fixed_cutting, sensitivity_weights
from mlrobust.spec import ir
from mlrobust.spec.instances import Instance
from mlrobust.storage import file_sha256


class Networks:
    """Networks loaded (and checked against onnxruntime on random points) once per file
    version, for whoever holds this object: a run, a sweep worker, a benchmark."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[Path, float], tuple[Network, float]] = {}

    def load(self, path: Path, image: np.ndarray | None = None) -> tuple[Network, float]:
        """The network of a file, with its largest difference to onnxruntime; checked again on
        `image` (the spec's own image) every time one is given."""
        key = (path.resolve(), path.stat().st_mtime)
        if key not in self._loaded:
            self._loaded[key] = load_network(path)
        network, difference = self._loaded[key]
        if image is not None:
            on_image = max_difference_to_onnxruntime(network, image[None])
            if not on_image <= ORT_TOLERANCE:
                raise NetworkMismatch(f"on this image the network differs from onnxruntime by {on_image:.2e}")
            difference = max(difference, on_image)
        return network, difference


def compile_problem(spec: ir.Spec, instance: Instance, networks: Networks | None = None) -> Problem:
    """The verification problem alone (for `check`, tests and benchmarks)."""
    # the image exactly as onnxruntime receives it (float32), so one-point boxes hold real points
    image = np.asarray(instance.image, dtype=np.float32).astype(np.float64)
    network, _ = (networks or Networks()).load(instance.model, image)
    output = output_property(spec.output_property, spec.k, instance, network, image)
    k = spec.k if spec.output_property.uses_k else None
    return Problem(
        network,
        image,
        # union or per-object, the Problem only sees the flat map; a writable copy of the
        # instance's shared, read-only one (torch warns when it wraps a read-only array)
        np.array(instance.pixel_layers().map),
        instance.target,
        k,
        spec.value_range,
        frozen=instance.frozen,
        output_property=output,
    )


def output_property(
    asked: ir.OutputPropertySpec, k: int, instance: Instance, network: Network, image: np.ndarray
) -> OutputProperty | None:
    """The spec's property over the network's logits (None: top-k, the Problem's default).

    `keep_predicted` is about what the model predicts on the clean image: onnxruntime's logits
    there (the ground truth every counterexample is re-checked against) give the labels to keep.
    A threshold is on a sigmoid score, which a Softmax head does not give (lint says so first).
    """
    if isinstance(asked, ir.TopKProperty):
        return None
    if asked.threshold is not None and network.head == "Softmax":
        raise UserError(
            f"property = {asked.text} thresholds a sigmoid score, but {instance.model.name} ends in a Softmax: "
            "a softmax score depends on every logit, so a threshold on it bounds no single logit",
            hint="ask property = top_k (k = 1: the target stays the argmax) or keep_predicted",
        )
    classes = network.num_classes
    if isinstance(asked, ir.ThresholdProperty):
        assert instance.target is not None, "lint requires a target for threshold"
        return AboveThreshold((instance.target,), asked.threshold, classes)
    logits = onnxruntime_logits(instance.model, image[None])[0]
    if asked.threshold is None:
        return KeepTopK(clean_top_k(logits, k), classes)
    labels = predicted_above(logits, asked.threshold)
    if not labels:
        raise UserError(
            f"property = {asked.text}: {instance.model.name} predicts no label on {instance.where} "
            f"(no logit above logit({asked.threshold:g}))",
            hint="nothing predicted means nothing to keep: lower the threshold, or choose another image",
        )
    return AboveThreshold(labels, asked.threshold, classes, predicted=True)


def method_chain(spec: ir.Spec, method: Method) -> tuple[VerifierStep, ...]:
    """The chain a method asks: the spec's, or the method's own oracle, which keeps the time
    limit of the spec's first complete verifier that declares one."""
    if method.oracle is None:
        return spec.chain
    oracle = CATALOGUE[method.oracle]
    limits = [
        value
        for step in spec.chain
        if step.info.tier == "complete"
        for name, value in step.options
        if name == "time_limit"
    ]
    overrides = {"time_limit": limits[0]} if limits and oracle.option("time_limit") else {}
    return (oracle.step(**overrides),)


def as_asked(spec: ir.Spec, instance: Instance, method: str) -> tuple[ir.Spec, str]:
    """(spec, method) as this instance asks them: a sweep's `cuttings` / `methods` axis value
    (held by the instance) replaces the spec's `cutting` and the method given (the spec's
    `search { method }` or the CLI's --method, which `run.checked_spec` refuses alongside a
    `methods` axis). Without axes, the spec and method unchanged."""
    if instance.cutting is not None:
        spec = dataclasses.replace(spec, cutting=instance.cutting)
    if instance.method is not None:
        method = instance.method
        spec = dataclasses.replace(spec, search=dataclasses.replace(spec.search, method=method))
    return spec, method


def cutting_vector(spec: ir.Spec, problem: Problem, counts: tuple[int, ...]) -> np.ndarray:
    """The cutting weights of the spec's strategy (every method takes the spec's; thesis-style
    imposed fixed in earlier versions, see `Method.former_cutting`). `counts`: each object's
    number of distances (one entry under `union`), for `fixed`, which shrinks near rings less
    by the distance to their own object."""
    strategy = spec.cutting
    if isinstance(strategy, ir.ExplicitCutting):
        return np.array(strategy.values)  # held flat, object by object, as the layers are numbered
    if isinstance(strategy, ir.SensitivityCutting):
        return sensitivity_weights(problem)
    return fixed_cutting(counts)


def question_hashes(spec: ir.Spec, instance: Instance, method: Method) -> tuple[str, str]:
    """(question, queries key), sha256 prefixes of what decides the answer.

    The queries key covers what decides one query's verdict: the model file, the image and mask
    as arrays, the frozen pixels (when any), the target, k, the property (when it is not
    top-k), the range and the chain. The question
    adds what decides the search's answer: weights, cutting, resolution, seed and method. The IR reprs leave out
    spans, so moving a line or a comment changes neither; the search budget is in neither (a
    budget-stopped answer stands for that budget, and journal answers hold for any). The
    instance's sweep axes (method, cutting) replace `method` and the spec's cutting first, so
    two instances that differ only there ask different questions (and share a queries key).
    """
    spec, name = as_asked(spec, instance, method.name)
    method = METHOD_TABLE[name]
    chain = method_chain(spec, method)
    queries = [
        file_sha256(instance.model),
        hashlib.sha256(np.ascontiguousarray(instance.image, dtype=np.float32).tobytes()).hexdigest(),
        hashlib.sha256(np.ascontiguousarray(instance.mask, dtype=bool).tobytes()).hexdigest(),
        list(instance.image.shape),
        instance.target,
        spec.k,
        list(spec.value_range),
        # (the device a verifier runs on decides no verdict: left out, so journals replay across it)
        [[step.name, [list(option) for option in step.options if option[0] != "device"]] for step in chain],
    ]
    if instance.frozen is not None and instance.frozen.any():
        # frozen pixels change every box, so every verdict; appended only when present, so the
        # hashes (and journals, sweep rows) of specs without a freeze stay what they were
        queries.append(
            ["freeze", hashlib.sha256(np.ascontiguousarray(instance.frozen, dtype=bool).tobytes()).hexdigest()]
        )
    layering = instance.pixel_layers()
    if layering.per_object:
        # the layers are another partition of the pixels, so every box is another box; appended
        # only per object, so the hashes of union specs (all specs before `layers`) stay as they were
        rings = hashlib.sha256(np.ascontiguousarray(layering.map, dtype=np.int64).tobytes()).hexdigest()
        queries.append(["layers", layering.mode, list(layering.counts), rings])
    asked = spec.output_property.key()
    if asked is not None:
        # another property asks another question of every box; appended only when it is not
        # top-k, so the hashes of specs that say nothing (or `property = top_k`) stay as they were
        queries.append(asked)
    search = [repr((spec.weights, spec.cutting)), repr((spec.search.resolution, spec.search.seed)), method.name]
    if method.former_cutting is not None and spec.cutting.name != method.former_cutting:
        # thesis-style once cut with fixed weights whatever the spec said: what it answered this
        # question then is no answer to it now (with fixed cutting the question is the same as then)
        search.append("cutting from the spec")
    answer = [*queries, *search]

    def digest(parts: list) -> str:  # type: ignore[type-arg]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]

    return digest(answer), digest(queries)


def require_target_in_top_k(problem: Problem, instance: Instance) -> None:
    """Refuse an image on which the model (onnxruntime, the user's file) already violates the
    property (misses the target, or its score is at or below the threshold, or the clean top-k
    set is tied at its edge): even ε = 0 is not robust, so no ε* exists (a search would report
    an empty box that its own re-proof refutes)."""
    logits = onnxruntime_logits(instance.model, problem.image[None])
    if not problem.violated(logits)[0]:
        return
    output = problem.output
    where = f"{instance.model.name} on {instance.where}"
    if isinstance(output, AboveThreshold):
        label = output.labels[0]
        raise TargetNotInTopK(
            f"{where} itself gives target {label} the logit {logits[0, label]:.4g}, not above "
            f"logit({output.threshold:g}) = {output.cut:.4g} (its sigmoid score is not above {output.threshold:g}): "
            "no neighborhood can be robust",
            hint="choose an image on which the model predicts the target, another target, or a lower threshold",
        )
    if isinstance(output, KeepTopK):
        raise TargetNotInTopK(
            f"{where} itself ties at the edge of its top {output.k} (labels {', '.join(map(str, output.labels))} "
            "against an equal logit outside): the predicted top-k set is not defined, so nothing can be kept",
            hint="choose another image, or another k",
        )
    top = [int(c) for c in np.argsort(-logits[0], kind="stable")[: problem.k]]
    raise TargetNotInTopK(
        f"{instance.model.name} does not put target {problem.target} in its top {problem.k} on {instance.where} "
        f"itself (its top {problem.k}: {', '.join(map(str, top))}): no neighborhood can be robust",
        hint="choose an image the model gets right, or another target",
    )


def compile(spec: ir.Spec, instance: Instance, method: str, networks: Networks | None = None) -> Plan:
    """The plan of one instance: raises TargetNotInTopK when there is nothing to prove. The
    instance's sweep axes (method, cutting) win over `method` and the spec's cutting."""
    spec, method = as_asked(spec, instance, method)
    chosen = METHOD_TABLE[method]
    problem = compile_problem(spec, instance, networks)
    require_target_in_top_k(problem, instance)
    question, queries_key = question_hashes(spec, instance, chosen)
    return Plan(
        problem=problem,
        method=chosen,
        # a layer frozen whole cannot move at any ε: weight 0, so w·ε* counts only what can
        weights=ir.weight_vector(spec.weights, instance.pixel_layers().counts) * problem.free_layers(),
        cutting=cutting_vector(spec, problem, instance.pixel_layers().counts),
        chain=method_chain(spec, chosen),
        resolution=spec.search.resolution,
        budget=SearchBudget(spec.search.queries, spec.search.time_limit),
        seed=spec.search.seed,
        question=question,
        queries_key=queries_key,
    )
