"""`mlrobust report`: the experiment's Markdown and figures from a real sweep.

Every number in the Markdown's tables and verdicts is recomputed here from sweep.json and the
instances' result.json with the standard library (statistics, not the report's numpy code), the
figures are real PNG files, a rerun writes the same bytes, and instances that were skipped or
failed are listed with their reasons instead of vanishing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from mlrobust.report.experiment_data import NEAR_LAYERS, Outcome
from mlrobust.report.experiment_stats import (
    cutting_comparisons,
    explanation_cells,
    gaps,
    layer_eps,
    layer_label,
    model_comparisons,
    paired,
)
from mlrobust.sweep import sweep

from .helpers import REPO, run_cli

SPEC = REPO / "tests" / "specs" / "sweep" / "report.mlr"
BLOCKED = ("double_mnist_l0", "sensitivity", "test/0001")  # its folder is a file: the instance fails


def fmt(value: float | int | None) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Each Markdown table, keyed by its header line, as a list of {column: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            header = [cell.strip() for cell in line.strip("|").split("|")]
            rows = []
            for row in itertools.takewhile(lambda text: text.startswith("| "), lines[i + 2 :]):
                rows.append(dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")), strict=True)))
            found.setdefault(line, []).extend(rows)
    return found


def table(markdown: str, starts: str) -> list[dict[str, str]]:
    chosen = [rows for header, rows in tables(markdown).items() if header.startswith(starts)]
    assert chosen, f"no table starting {starts!r}"
    return [row for rows in chosen for row in rows]


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    spec = root / "report.mlr"
    spec.write_text(SPEC.read_text().replace('"../../../', f'"{REPO}/'))
    folder = root / "sweep"
    blocked = folder.joinpath(*BLOCKED[:2], *BLOCKED[2].split("/"))
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a folder\n")
    sweep(spec, folder, workers=2, force=True)  # force: the folder holds the blocking file
    out = root / "docs" / "results.md"
    done = run_cli("report", str(folder), "--out", str(out))
    assert done.code == 0, done.stderr
    return folder, out, done


@pytest.fixture(scope="module")
def truth(reported):
    """The sweep's rows and results, read with plain json."""
    folder, _, _ = reported
    manifest = json.loads((folder / "sweep.json").read_text())
    rows = []
    for row in manifest["instances"]:
        result = json.loads((folder / row["folder"] / "result.json").read_text()) if row["status"] == "done" else None
        rows.append((row, result))
    return manifest, rows


def cegis_cuts(result: dict) -> int:  # type: ignore[type-arg]
    return sum(1 for q in result["queries"] if q["purpose"].startswith("expand (CEGIS cut"))


def done_results(truth, model: str, cutting: str) -> list[dict]:  # type: ignore[type-arg]
    _, rows = truth
    return [
        result
        for row, result in rows
        if result is not None and Path(row["model"]).stem == model and row["cutting"] == cutting
    ]


def test_the_sweep_has_done_skipped_and_failed_instances(truth) -> None:
    manifest, _ = truth
    assert manifest["counts"]["done"] == 7
    assert manifest["counts"]["skipped"] == 4  # test/0006, both models, both cuttings
    assert manifest["counts"]["failed"] == 1


def test_every_figure_is_a_png_the_markdown_links(reported) -> None:
    _, out, done = reported
    markdown = out.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert {"sizes_search.png", "eps_per_layer.png", "heatmaps.png", "explanations.png"} <= {
        Path(link).name for link in links
    }
    for link in links:
        path = out.parent / link
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
        assert str(path) in done.stdout  # the command lists what it wrote
    for csv_link in re.findall(r"\]\(([^)]+\.csv)\)", markdown):
        assert (out.parent / csv_link).stat().st_size > 0


def test_a_rerun_writes_the_same_bytes(reported, tmp_path: Path) -> None:
    folder, out, _ = reported

    def digest() -> dict[str, str]:
        return {
            str(path.relative_to(out.parent)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(out.parent.rglob("*"))
            if path.is_file()
        }

    before = digest()
    again = run_cli("report", str(folder), "--out", str(out))
    assert again.code == 0, again.stderr
    assert digest() == before


def test_skipped_and_failed_instances_are_listed_with_reasons(reported, truth) -> None:
    _, out, _ = reported
    markdown = out.read_text()
    manifest, rows = truth
    counts = ", ".join(f"{status} {n}" for status, n in sorted(manifest["counts"].items()) if n)
    assert f"instances: {len(rows)} ({counts})" in markdown
    listed = table(markdown, "| sweep | # |")
    expected = [row for row, _ in rows if row["status"] != "done"]
    assert [(int(r["#"]), r["canvas"], r["status"]) for r in listed] == [
        (row["index"], row["canvas"], row["status"]) for row in expected
    ]
    reasons = table(markdown, "| status | reason |")
    assert sum(int(r["instances"]) for r in reasons) == len(expected)
    failed = next(row for row in expected if row["status"] == "failed")
    assert any(r["status"] == "failed" and r["reason"][:40] in " ".join(failed["error"].split()) for r in reasons)
    assert any(r["status"] == "skipped" and "does not put target" in r["reason"] for r in reasons)


def test_the_size_table_and_the_paired_comparisons_are_recomputed(reported, truth) -> None:
    _, out, _ = reported
    markdown = out.read_text()
    sizes = table(markdown, "| method | cutting | model | done |")
    assert len(sizes) == 4
    for line in sizes:
        results = done_results(truth, line["model"], line["cutting"])
        values = [r["size"] for r in results]
        q1, q2, q3 = quartiles(values)
        uniform = [r["uniform_size"] for r in results]
        ratios = [r["size"] / r["uniform_size"] for r in results if r["uniform_size"]]
        assert line["done"] == str(len(results))
        assert line["median w·ε*"] == fmt(q2)
        assert line["IQR"] == f"{fmt(q1)}–{fmt(q3)}"
        assert line["median uniform"] == fmt(statistics.median(uniform))
        assert line["median ×uniform"] == fmt(statistics.median(ratios) if ratios else None)
    comparisons = table(markdown, "| method | cutting | a | b | pairs |")
    assert len(comparisons) == 2  # one model pair per cutting
    for line in comparisons:
        left = {r["problem"]["canvas"]: r["size"] for r in done_results(truth, line["a"], line["cutting"])}
        right = {r["problem"]["canvas"]: r["size"] for r in done_results(truth, line["b"], line["cutting"])}
        differences = [left[c] - right[c] for c in sorted(left) if c in right]
        nonzero = [d for d in differences if abs(d) > 1e-12]
        assert line["pairs"] == str(len(differences))
        assert line["median a − b"] == fmt(statistics.median(differences))
        assert line["a larger"] == str(sum(d > 1e-12 for d in differences))
        assert line["b larger"] == str(sum(d < -1e-12 for d in differences))
        assert line["equal"] == str(len(differences) - len(nonzero))
        assert line["p"] == (f"{stats.wilcoxon(nonzero).pvalue:.3g}" if nonzero else "—")
    verdicts = r"\*\*search, (\w+) cutting:\*\* `(\w+)` has the largest median w·ε\* \(([^)]+)\)"
    for cutting, model, value in re.findall(verdicts, markdown):
        medians = {
            line["model"]: statistics.median([r["size"] for r in done_results(truth, line["model"], cutting)])
            for line in sizes
            if line["cutting"] == cutting
        }
        assert model == max(medians, key=medians.__getitem__) and value == fmt(medians[model])


def test_the_cutting_comparison_is_recomputed(reported, truth) -> None:
    _, out, _ = reported
    markdown = out.read_text()
    lines = table(markdown, "| method | model | a | b | pairs | identical |")
    assert {(line["model"], line["a"], line["b"]) for line in lines} == {
        ("double_mnist_none", "fixed", "sensitivity"),
        ("double_mnist_l0", "fixed", "sensitivity"),
    }
    for line in lines:
        a = {r["problem"]["canvas"]: r for r in done_results(truth, line["model"], "fixed")}
        b = {r["problem"]["canvas"]: r for r in done_results(truth, line["model"], "sensitivity")}
        pairs = [(a[c]["size"], b[c]["size"]) for c in sorted(a) if c in b]
        ratios = [y / x for x, y in pairs if x > 0]
        assert line["pairs"] == str(len(pairs))
        assert line["identical"] == str(sum(abs(x - y) <= 1e-12 for x, y in pairs))
        assert line["median b/a"] == fmt(statistics.median(ratios) if ratios else None)
        assert line["min b/a"] == fmt(min(ratios) if ratios else None)
        assert line["max b/a"] == fmt(max(ratios) if ratios else None)
        cuts_a, cuts_b = (sum(cegis_cuts(r) for r in side.values()) for side in (a, b))
        assert (line["CEGIS cuts (a)"], line["CEGIS cuts (b)"]) == (str(cuts_a), str(cuts_b))


def test_the_per_layer_table_and_csv_are_recomputed(reported, truth) -> None:
    _, out, _ = reported
    markdown = out.read_text()
    rows = table(markdown, "| layer |")
    assert rows, "no per-layer table"
    csv_rows = [line.split(",") for line in (out.parent / "results" / "eps_per_layer.csv").read_text().splitlines()[1:]]
    for model, cutting, layer, n, mean, med in csv_rows:
        values = [r["eps"][int(layer)] for r in done_results(truth, model, cutting) if len(r["eps"]) > int(layer)]
        assert int(n) == len(values)
        assert float(mean) == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert float(med) == pytest.approx(statistics.median(values), rel=1e-12)
    # the Markdown's rows are the CSV's first layers, formatted (both cutting tables, in order)
    by_key = {(m, c, int(d)): (n, float(mean), float(med)) for m, c, d, n, mean, med in csv_rows}
    cuttings = iter(["fixed"] * 10 + ["sensitivity"] * 10)
    for row in rows:
        cutting = next(cuttings)
        for model in ("double_mnist_none", "double_mnist_l0"):
            n, mean, med = by_key[(model, cutting, int(row["layer"]))]
            assert (row[f"{model} n"], row[f"{model} mean"], row[f"{model} median"]) == (n, fmt(mean), fmt(med))


def test_explanations_and_gap_tables_are_recomputed(reported, truth) -> None:
    _, out, _ = reported
    markdown = out.read_text()
    cells = [line.split(",") for line in (out.parent / "results" / "explanations.csv").read_text().splitlines()[1:]]
    assert cells
    for model, perturbed, target, n, size, layer0, near in cells:
        group = [
            r
            for r in done_results(truth, model, "fixed")
            if r["problem"]["perturbed_label"] == int(perturbed) and r["problem"]["target"] == int(target)
        ]
        assert int(n) == len(group) > 0
        assert float(size) == pytest.approx(statistics.median([r["size"] for r in group]), rel=1e-12)
        assert float(layer0) == pytest.approx(statistics.median([r["eps"][0] for r in group]), rel=1e-12)
        near_means = [statistics.fmean([r["eps"][d] for d in NEAR_LAYERS]) for r in group]
        assert float(near) == pytest.approx(statistics.median(near_means), rel=1e-12)
    for r in done_results(truth, "double_mnist_none", "fixed"):  # the canvases' digits are recorded
        canvas = json.loads((REPO / "data" / "double_mnist" / "index.json").read_text())
        entry = next(e for e in canvas["canvases"] if e["id"] == r["problem"]["canvas"])
        assert r["problem"]["canvas_labels"] == entry["labels"]
        assert r["problem"]["perturbed_label"] == next(x for x in entry["labels"] if x != r["problem"]["target"])
    for line in table(markdown, "| model | layer | n | median ε* |"):
        results = done_results(truth, line["model"], "fixed")
        d = int(line["layer"])
        having = [r for r in results if len(r["eps"]) > d]
        bracketed = [r for r in having if r["maximality"][d]["refuted"] is not None]
        assert line["n"] == str(len(having))
        assert line["median ε*"] == fmt(statistics.median([r["eps"][d] for r in having]))
        assert line["bracketed"] == str(len(bracketed))
        assert line["median refuted ε"] == fmt(
            statistics.median([r["maximality"][d]["refuted"] for r in bracketed]) if bracketed else None
        )


def test_the_cost_table_is_recomputed(reported, truth) -> None:
    _, out, _ = reported
    for line in table(out.read_text(), "| method | cutting | model | verifier |"):
        results = done_results(truth, line["model"], line["cutting"])
        uses = [r["verifiers"].get(line["verifier"], {"runs": 0, "seconds": 0.0}) for r in results]
        assert line["runs"] == str(sum(u["runs"] for u in uses))
        assert line["seconds"] == fmt(float(sum(u["seconds"] for u in uses)))
        assert line["median runs"] == fmt(float(statistics.median([u["runs"] for u in uses])))
        assert line["median seconds"] == fmt(float(statistics.median([u["seconds"] for u in uses])))


# --- the statistics on outcomes made by hand: the cases a small real sweep may not reach ---


def outcome(
    where: str, size: float, eps: tuple[float, ...], refuted: tuple[float | None, ...] = (), **fields
) -> Outcome:
    base = {
        "index": 0,
        "sweep": "s",
        "model": "m",
        "method": "search",
        "cutting": "fixed",
        "status": "done",
        "reason": None,
        "target": 3,
        "perturbed_label": 5,
    }
    return Outcome(where=where, size=size, eps=eps, refuted=refuted, **{**base, **fields})


def test_gaps_take_the_median_over_bracketed_instances_only() -> None:
    done = [
        outcome("a", 1.0, (0.1, 0.2), (0.3, None)),
        outcome("b", 1.0, (0.2, 0.4), (0.25, 0.8)),
        outcome("c", 1.0, (0.4,), (None,)),
    ]
    first, second = gaps(done, 5)
    assert (first.n, first.proved, first.bracketed) == (3, 0.2, 2)
    assert first.refuted == pytest.approx(0.275) and first.ratio == pytest.approx((3.0 + 1.25) / 2)
    assert (second.n, second.proved, second.bracketed) == (2, pytest.approx(0.3), 1)
    assert (second.refuted, second.ratio) == (0.8, 2.0)


def test_explanations_group_by_digit_pair() -> None:
    done = [
        outcome("a", 0.2, (0.1, 0.2, 0.4, 0.6), perturbed_label=5, target=3),
        outcome("b", 0.4, (0.3, 0.0, 0.0, 0.3), perturbed_label=5, target=3),
        outcome("c", 0.9, (0.5, 0.5), perturbed_label=1, target=7),
    ]
    cells = {(c.perturbed, c.target): c for c in explanation_cells(done)}
    assert set(cells) == {(5, 3), (1, 7)}
    assert (cells[5, 3].n, cells[5, 3].size, cells[5, 3].object_eps) == (2, pytest.approx(0.3), pytest.approx(0.2))
    assert cells[5, 3].near_eps == pytest.approx((0.4 + 0.1) / 2)
    assert cells[1, 7].near_eps == pytest.approx(0.5)  # only layer 1 exists


def test_paired_comparisons_drop_ties_and_unmatched_canvases() -> None:
    left = [outcome("a", 1.0, ()), outcome("b", 2.0, ()), outcome("c", 3.0, ()), outcome("x", 9.0, ())]
    right = [outcome("a", 1.0, ()), outcome("b", 1.0, ()), outcome("c", 1.0, ()), outcome("y", 0.0, ())]
    result = paired("L", "R", left, right)
    assert (result.n, result.a_larger, result.b_larger, result.equal) == (3, 2, 0, 1)
    assert result.median_difference == 1.0
    assert result.p_value == pytest.approx(stats.wilcoxon([1.0, 2.0]).pvalue)
    assert paired("L", "R", left[:1], right[:1]).p_value is None  # every pair equal: no test


def test_cutting_comparison_counts_identical_pairs_and_cuts() -> None:
    from mlrobust.report.experiment_data import SweepData

    outcomes = (
        outcome("a", 1.0, (), cutting="fixed", cuts=2),
        outcome("b", 2.0, (), cutting="fixed"),
        outcome("a", 1.0, (), cutting="sensitivity"),
        outcome("b", 3.0, (), cutting="sensitivity", cuts=1),
    )
    (comparison,) = cutting_comparisons(SweepData((), outcomes))
    assert (comparison.n, comparison.identical, comparison.cuts_a, comparison.cuts_b) == (2, 1, 2, 1)
    assert (comparison.ratio_min, comparison.ratio_max) == (1.0, 1.5)


def test_models_are_compared_only_where_they_ran_under_the_same_method_and_cutting() -> None:
    """Two sweeps reported together may ask different models of different methods: a model
    that never ran under a method is no pair of that method's comparison."""
    from mlrobust.report.experiment_data import SweepData

    outcomes = (
        outcome("a", 1.0, (), model="cnn1"),
        outcome("a", 2.0, (), model="cnn2"),
        outcome("a", 0.5, (), model="mlp", method="thesis-style"),
    )
    data = SweepData((), outcomes)
    assert [(c.a, c.b, c.n) for c in model_comparisons(data, "search", "fixed")] == [("cnn1", "cnn2", 1)]
    assert model_comparisons(data, "thesis-style", "fixed") == []


# --- bad input ---


def test_bad_input_is_a_clear_user_error(reported, tmp_path: Path) -> None:
    folder, _, _ = reported
    missing = run_cli("report", str(tmp_path / "nowhere"))
    assert missing.code == 1 and "is not a folder" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run_cli("report", str(empty))
    assert nothing.code == 1 and "no sweep manifest" in nothing.stderr and "hint" in nothing.stderr
    wrong = run_cli("report", str(folder), "--out", str(tmp_path / "results.txt"))
    assert wrong.code == 1 and "Markdown" in wrong.stderr
    twin = tmp_path / "twin" / "other"
    shutil.copytree(folder, twin)
    twice = run_cli("report", str(folder), str(twin), "--out", str(tmp_path / "twice.md"))
    assert twice.code == 1 and "is in two sweeps" in twice.stderr


def test_a_resumed_sweep_reports_the_wall_time_of_all_its_invocations(reported, tmp_path: Path) -> None:
    folder, _, _ = reported
    copy = tmp_path / "sweep"
    shutil.copytree(folder, copy)
    first = json.loads((copy / "sweep.json").read_text())
    assert first["invocations"] == 1 and first["total_seconds"] == first["seconds"]
    sweep(folder.parent / "report.mlr", copy, workers=1)  # everything done is reused; the failed one fails again
    second = json.loads((copy / "sweep.json").read_text())
    assert second["invocations"] == 2
    assert second["total_seconds"] == pytest.approx(first["total_seconds"] + second["seconds"], abs=2e-3)
    out = tmp_path / "results.md"
    assert run_cli("report", str(copy), "--out", str(out)).code == 0
    assert f"wall time {second['total_seconds']:.4g} s in 2 invocations" in out.read_text()


def test_per_object_layers_are_aggregated_by_object_and_distance_never_by_index() -> None:
    """Under `layers = per_object` index 2 is (object 0, distance 2) on one canvas and (object 1,
    distance 0) on another: the per-layer statistics must group by (object, distance)."""
    a = outcome("a", 1.0, (0.1, 0.2, 0.3, 0.5), (None, 0.9, None, None), labels=((0, 0), (0, 1), (0, 2), (1, 0)))
    b = outcome("b", 1.0, (0.2, 0.4, 0.6, 0.8), (None, None, 1.2, None), labels=((0, 0), (0, 1), (1, 0), (1, 1)))
    rows = {r.key: r for r in layer_eps([a, b])}
    assert list(rows) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert (rows[(1, 0)].n, rows[(1, 0)].mean) == (2, pytest.approx((0.5 + 0.6) / 2))
    assert (rows[(0, 2)].n, rows[(0, 2)].mean) == (1, pytest.approx(0.3))
    assert [layer_label(key) for key in rows] == ["0:0", "0:1", "0:2", "1:0", "1:1"]
    gap = {r.key: r for r in gaps([a, b], 1)}
    assert list(gap) == [(0, 0), (1, 0)]  # distances below 1 only, of both objects
    assert (gap[(1, 0)].bracketed, gap[(1, 0)].refuted) == (1, pytest.approx(1.2))
    assert gaps([a, b], 2)[1].ratio == pytest.approx(0.9 / 0.2)  # (0, 1): only a has a bracket
    # the object itself is every object's distance 0; near layers are distances 1-3 of every object
    (cell,) = explanation_cells([a, b])
    assert cell.object_eps == pytest.approx(np.median([(0.1 + 0.5) / 2, (0.2 + 0.6) / 2]))
    assert cell.near_eps == pytest.approx(np.median([(0.2 + 0.3) / 2, (0.4 + 0.8) / 2]))
    # union results keep their plain layer numbers
    union = outcome("c", 1.0, (0.1, 0.2))
    assert [layer_label(r.key) for r in layer_eps([union])] == ["0", "1"]


def test_an_archived_sweep_reports_the_same_bytes_and_is_reused_by_a_rerun(reported, tmp_path: Path) -> None:
    """The archive (mlrobust/sweep_archive.py) keeps only the manifest, the summary and each done
    instance's result.json, yet the report from its unpacked copy is byte-identical (Markdown
    and figures), every done instance would be reused by a rerun of the sweep, packing twice
    gives the same bytes, and unpacking never overwrites a file that differs."""
    from mlrobust.errors import UserError
    from mlrobust.spec.check import load_checked
    from mlrobust.sweep import manifest_rows
    from mlrobust.sweep_archive import pack, unpack

    folder, out, _ = reported
    archive = tmp_path / "sweeps.tar.gz"
    packed = pack([folder], archive)
    manifest = json.loads((folder / "sweep.json").read_text())
    done = [row for row in manifest["instances"] if row["status"] == "done"]
    assert packed.results == len(done) > 0
    assert pack([folder], tmp_path / "again.tar.gz").size == packed.size
    assert (tmp_path / "again.tar.gz").read_bytes() == archive.read_bytes()

    copy = tmp_path / "copy"
    unpacked = unpack(archive, copy)
    assert not unpacked.kept
    names = {path.name for path in (copy / folder.name).rglob("*") if path.is_file()}
    assert names == {"sweep.json", "results.csv", "result.json"}  # no journal, plot or counterexample
    again = copy / "docs" / "results.md"
    assert run_cli("report", str(copy / folder.name), "--out", str(again)).code == 0
    for original in sorted(out.parent.rglob("*")):
        if original.is_file() and original != out:
            twin = again.parent / original.relative_to(out.parent)
            assert twin.read_bytes() == original.read_bytes(), original.name

    def spec_unnamed(text: str) -> str:  # the spec's path is written relative to the page
        return re.sub(r"`mlrobust sweep \S+", "`mlrobust sweep SPEC", text)

    assert spec_unnamed(again.read_text()) == spec_unnamed(out.read_text())

    checked = load_checked(folder.parent / "report.mlr")
    assert checked.spec is not None
    rows = manifest_rows(checked.spec, checked.instances, copy / folder.name, checked.spec.search.method)
    assert {row.folder for row in rows if row.status == "done"} == {row["folder"] for row in done}

    changed = copy / folder.name / done[0]["folder"] / "result.json"
    changed.write_text("{}")
    assert unpack(archive, copy).kept == (changed,) and changed.read_text() == "{}"
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(UserError, match="could not unpack"):
        unpack(bad, copy)
    with pytest.raises(UserError, match="not a sweep folder"):
        pack([tmp_path], archive)


def test_a_sweep_moved_to_another_checkout_finds_its_canvases_by_their_bytes(reported, tmp_path: Path) -> None:
    """result.json records absolute paths, so a sweep unpacked in another checkout (another
    machine, another path) names canvases that are not there. The report finds each under the
    checkout by the path's tail and the recorded sha256, and draws the same heatmaps; a file
    of that name with other bytes is never drawn."""
    from mlrobust.report.experiment_data import load_sweeps

    folder, out, _ = reported
    checkout = tmp_path / "checkout"
    moved = checkout / "runs" / folder.name
    shutil.copytree(folder, moved)
    recorded: set[Path] = set()
    for path in moved.rglob("result.json"):
        result = json.loads(path.read_text())
        for key in ("image", "mask"):
            if result["problem"].get(key):
                recorded.add(Path(result["problem"][key]))
                result["problem"][key] = result["problem"][key].replace(str(REPO), "/nowhere/mlrobust")
        path.write_text(json.dumps(result))
    assert recorded and all(path.is_relative_to(REPO) for path in recorded)
    for old in recorded:
        twin = checkout / old.relative_to(REPO)
        twin.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(old, twin)

    again = checkout / "docs" / "results.md"
    assert run_cli("report", str(moved), "--out", str(again)).code == 0
    figure = Path("results") / "heatmaps.png"
    assert (again.parent / figure).read_bytes() == (out.parent / figure).read_bytes()
    done = [o for o in load_sweeps([moved]).outcomes if o.done]
    located = [o.picture_files[0] for o in done]
    assert done and all(image and Path(image).is_relative_to(checkout) for image in located)

    changed = checkout / Path(located[0]).relative_to(checkout)  # type: ignore[arg-type]
    image = np.asarray(Image.open(changed)).copy()
    image[0, 0] = 255 - image[0, 0]
    Image.fromarray(image).save(changed)
    found = {o.where: o.picture_files[0] for o in load_sweeps([moved]).outcomes if o.done}
    assert found[done[0].where] is None  # the bytes differ from the run's: not that canvas
    assert run_cli("report", str(moved), "--out", str(again)).code == 0
