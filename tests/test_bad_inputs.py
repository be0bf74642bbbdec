"""Bad models, images and masks end in exit 1 with a message that names the problem (issue 21).

Never exit 2, a traceback or a hang. `lint` runs the same load check as `check` and `run`
(the import into the IR and the onnxruntime cross-check), so a model `check` would refuse is
reported by `lint` first, and a spec `lint` passes is one `check` can run. Every fixture is
built here (onnx.helper, numpy, PIL, mkfifo); the CLI runs in a real subprocess with a timeout,
so a reader that blocks on a pipe fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from mlrobust.errors import UserError
from mlrobust.nn.network import load_network, onnxruntime_logits
from mlrobust.spec.instances import read_image, read_mask
from mlrobust.userfiles import MAX_IMAGE_PIXELS

from .helpers import REPO
from .test_nn_ops import compare, make_model

RNG = np.random.default_rng(21)
CLI_TIMEOUT = 120  # seconds: a hang on a pipe fails the test rather than CI


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mlrobust", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT,
    )


def lint_json(specs: list[Path], cwd: Path) -> tuple[int, dict[str, list[dict]]]:
    """Exit code and error diagnostics per spec file name, from one `lint --format json` run."""
    done = cli("lint", "--format", "json", *map(str, specs), cwd=cwd)
    assert "Traceback" not in done.stderr, done.stderr
    payload = json.loads(done.stdout)
    errors: dict[str, list[dict]] = {spec.name: [] for spec in specs}
    for diagnostic in payload["diagnostics"]:
        if diagnostic["severity"] == "error":
            errors[Path(diagnostic["file"]).name].append(diagnostic)
    return done.returncode, errors


def save_model(
    path: Path,
    nodes: list,
    initializers: dict[str, np.ndarray],
    in_shape: tuple = (1, 4, 4),
    out_shape: tuple = (3,),
    elem: int = TensorProto.FLOAT,
    batch: int | str = "N",
    opsets: tuple[tuple[str, int], ...] = (("", 17),),
) -> Path:
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("x", elem, [batch, *in_shape])],
        [helper.make_tensor_value_info("y", elem, [batch, *out_shape])],
        [numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    onnx.save(model, path)
    return path


def dense(path: Path, weight: np.ndarray | None = None, **kwargs) -> Path:
    """Flatten -> MatMul: a (1, 4, 4) image to 3 logits."""
    weight = RNG.normal(size=(16, 3)).astype(np.float32) if weight is None else weight
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])]
    return save_model(path, nodes, {"W": weight}, **kwargs)


def spec(folder: Path, name: str, model: str, image: str = "image.npy", mask: str = "mask.npy", target=0) -> Path:
    path = folder / f"{name}.mlr"
    target_text = json.dumps(target) if isinstance(target, str) else str(target)
    path.write_text(
        f'model = "{model}"\nimage = "{image}"\nmask = "{mask}"\ntarget = {target_text}\nk = 1\n'
        "chain = attack -> bounds\n"
    )
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    np.save(tmp_path / "image.npy", RNG.uniform(size=(1, 4, 4)).astype(np.float32))
    np.save(tmp_path / "mask.npy", np.ones((4, 4), dtype=bool))
    dense(tmp_path / "ok.onnx")
    return tmp_path


# ---------------------------------------------------------------- models


def broken_models(folder: Path) -> dict[str, tuple[str, str, list[str]]]:
    """name -> (model file, expected code, fragments the message must hold). Each exited 2 in
    `check` (or passed lint and was refused by `run`) before."""
    weight = RNG.normal(size=(16, 3)).astype(np.float32)
    nan, inf, huge = weight.copy(), weight.copy(), weight.copy()
    nan[0, 0], inf[3, 1], huge[0, 0] = np.nan, np.inf, 3e38
    dense(folder / "f16.onnx", weight.astype(np.float16), elem=TensorProto.FLOAT16)
    dense(folder / "nan.onnx", nan)
    dense(folder / "inf.onnx", inf)
    dense(folder / "huge.onnx", huge)
    dense(folder / "ten.onnx", weight, out_shape=(10,))  # declares 10 outputs, computes 3
    dense(folder / "dynamic.onnx", weight, in_shape=(1, "H", "W"))
    dense(folder / "batch4.onnx", weight, batch=4)
    divide = [
        helper.make_node("Div", ["x", "z"], ["d"], name="scale"),
        helper.make_node("Flatten", ["d"], ["f"]),
        helper.make_node("MatMul", ["f", "W"], ["y"]),
    ]
    save_model(folder / "divzero.onnx", divide, {"W": weight, "z": np.array([0.0], dtype=np.float32)})
    custom = [
        helper.make_node("Swish", ["x"], ["s"], domain="com.example", name="act"),
        helper.make_node("Flatten", ["s"], ["f"]),
        helper.make_node("MatMul", ["f", "W"], ["y"]),
    ]
    save_model(folder / "custom.onnx", custom, {"W": weight}, opsets=(("", 17), ("com.example", 1)))
    return {
        "f16": ("f16.onnx", "model-load-error", ["float16", "float32 or float64"]),
        "nan": ("nan.onnx", "model-load-error", ["'W'", "NaN or infinite"]),
        "inf": ("inf.onnx", "model-load-error", ["'W'", "NaN or infinite"]),
        "huge": ("huge.onnx", "model-load-error", ["values up to", "too large to check"]),
        "ten": ("ten.onnx", "model-load-error", ["declares", "10", "computes 3"]),
        "dynamic": ("dynamic.onnx", "model-load-error", ["'H'", "must be fixed except the batch"]),
        "batch4": ("batch4.onnx", "model-load-error", ["batch dimension is fixed to 4"]),
        "divzero": ("divzero.onnx", "unsupported-op", ["Div node 'scale'", "zero"]),
        "custom": ("custom.onnx", "unsupported-op", ["com.example.Swish", "'act'"]),
    }


def test_lint_names_each_broken_model_and_passes_the_fixable_ones(folder: Path) -> None:
    cases = broken_models(folder)
    weight = RNG.normal(size=(16, 3))
    dense(folder / "f64.onnx", weight, elem=TensorProto.DOUBLE)  # supported: the IR computes in float64
    dense(folder / "batch1.onnx", weight.astype(np.float32), batch=1)  # torch.onnx.export's default
    specs = [spec(folder, name, model, target=7 if name == "ten" else 0) for name, (model, _, _) in cases.items()]
    specs += [spec(folder, "f64", "f64.onnx"), spec(folder, "batch1", "batch1.onnx")]
    code, errors = lint_json(specs, folder)
    assert code == 1
    for name, (model, expected_code, fragments) in cases.items():
        found = errors[f"{name}.mlr"]
        assert [d["code"] for d in found] == [expected_code], (name, found)
        message = found[0]["message"]
        assert model in message and all(f in message for f in fragments), (name, message)
        assert found[0]["hint"], name  # every refusal says what to do
    assert errors["f64.mlr"] == [] and errors["batch1.mlr"] == []


def test_check_refuses_a_broken_model_with_exit_1(folder: Path) -> None:
    """`check` ended in exit 2 on these (an onnxruntime type error, an IndexError, a mismatch)."""
    weight = RNG.normal(size=(16, 3)).astype(np.float32)
    dense(folder / "ten.onnx", weight, out_shape=(10,))
    done = cli("check", str(spec(folder, "ten", "ten.onnx", target=7)), "--eps", "0.05", cwd=folder)
    assert done.returncode == 1, done.stderr
    assert "declares its output 'y' as 10 values but its graph computes 3" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_load_refuses_broken_models_as_user_errors(folder: Path) -> None:
    """What `check` and `run` call, without lint in front: each refusal is a UserError (exit 1)."""
    for name, (model, _, fragments) in broken_models(folder).items():
        if name in ("f16", "custom"):
            continue  # refused while reading the file (lint's model-load-error), checked above
        with pytest.raises(UserError) as refused:
            load_network(folder / model)
        assert all(f in refused.value.message for f in fragments), (name, refused.value.message)


@pytest.mark.slow
def test_check_runs_float64_and_batch_1_models(folder: Path) -> None:
    """float64 is supported (fed to onnxruntime as float64), and a model with a fixed batch of 1
    is cross-checked one image at a time (it used to fail with "Got: 8 Expected: 1", exit 2)."""
    weight = RNG.normal(size=(16, 3))
    dense(folder / "f64.onnx", weight, elem=TensorProto.DOUBLE)
    dense(folder / "batch1.onnx", weight.astype(np.float32), batch=1)
    for name in ("f64", "batch1"):
        done = cli("check", str(spec(folder, name, f"{name}.onnx")), "--eps", "0.01", "--json", cwd=folder)
        assert done.returncode == 0, done.stderr
        payload = json.loads(done.stdout)
        assert payload["problem"]["onnxruntime_max_difference"] <= 1e-4


def test_batch_1_and_float64_models_match_onnxruntime_in_process(folder: Path) -> None:
    weight = RNG.normal(size=(16, 3))
    for name, kwargs in (("f64", {"elem": TensorProto.DOUBLE}), ("batch1", {"batch": 1})):
        path = dense(folder / f"{name}.onnx", weight if name == "f64" else weight.astype(np.float32), **kwargs)
        network, difference = load_network(path)
        assert difference <= 1e-4
        images = RNG.uniform(size=(5, 1, 4, 4))
        assert onnxruntime_logits(path, images).shape == (5, 3)
        np.testing.assert_allclose(network.logits(images), onnxruntime_logits(path, images), atol=1e-4)


def test_float64_model_is_checked_in_float64(folder: Path) -> None:
    """Fed float32, a float64 model would agree only to float32 rounding: the cross-check must use
    the model's own type, so large-ish weights still agree to far below the tolerance."""
    path = dense(folder / "f64.onnx", RNG.normal(size=(16, 3)) * 1e3, elem=TensorProto.DOUBLE)
    _, difference = load_network(path)
    assert difference < 1e-9


# Grouped Conv, MaxPool ceil_mode = 1 and the scalar/list forms of Constant are supported
# exactly (lint and run agree, and the IR equals onnxruntime), rather than refused.


@pytest.mark.parametrize(("group", "cin", "cout"), [(2, 4, 6), (3, 3, 3)])  # (3, 3, 3): depthwise
def test_grouped_conv_matches_onnxruntime(tmp_path: Path, group: int, cin: int, cout: int) -> None:
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], group=group, pads=[1, 1, 1, 1], strides=[2, 1])
    inits = {"W": RNG.normal(size=(cout, cin // group, 3, 3)), "B": RNG.normal(size=cout)}
    compare(make_model(tmp_path, [node], (cin, 7, 6), None, inits), (cin, 7, 6))


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [(5, 2, 2, [0, 0, 0, 0]), (7, 3, 2, [1, 1, 1, 1]), (6, 3, 2, [0, 0, 0, 0]), (8, 3, 3, [1, 0, 0, 1])],
)
def test_maxpool_ceil_mode_matches_onnxruntime(tmp_path: Path, size: int, kernel: int, stride: int, pads) -> None:
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=pads, ceil_mode=1
    )
    compare(make_model(tmp_path, [node], (2, size, size), None), (2, size, size))


@pytest.mark.parametrize(("attribute", "value"), [("value_float", 2.5), ("value_floats", [0.5, -1.0, 2.0, 3.0])])
def test_constant_float_forms_match_onnxruntime(tmp_path: Path, attribute: str, value) -> None:
    nodes = [helper.make_node("Constant", [], ["c"], **{attribute: value}), helper.make_node("Mul", ["x", "c"], ["y"])]
    compare(make_model(tmp_path, nodes, (4,), (4,)), (4,))


def test_constant_value_ints_as_a_reshape_target_matches_onnxruntime(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Constant", [], ["shape"], value_ints=[0, 4]),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    compare(make_model(tmp_path, nodes, (2, 2), (4,)), (2, 2))


def test_constant_with_an_unsupported_attribute_names_it(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Constant", [], ["c"], value_string="x", name="label"),
        helper.make_node("Relu", ["x"], ["y"]),
    ]
    path = make_model(tmp_path, nodes, (4,), (4,))
    with pytest.raises(UserError, match=r"Constant node 'label'.*value_string") as refused:
        load_network(path)
    assert "value_float" in (refused.value.hint or "")


# ---------------------------------------------------------------- images and masks


def png_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG that claims width × height pixels: a "bomb" costs nothing to make or to refuse."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def broken_images(folder: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (image file, fragments the message must hold)."""
    image = RNG.uniform(size=(1, 4, 4)).astype(np.float32)
    with_nan = image.copy()
    with_nan[0, 1, 2] = np.nan
    np.save(folder / "nan.npy", with_nan)
    np.save(folder / "big.npy", image.astype(np.float64) * 1e300)  # inf once read as float32
    np.save(folder / "strings.npy", np.full((4, 4), "a"))
    np.save(folder / "complex.npy", image.astype(np.complex64) + 1j)
    np.save(folder / "records.npy", np.zeros((4, 4), dtype=[("a", "f4"), ("b", "i4")]))
    np.save(folder / "empty.npy", np.zeros((0, 4), dtype=np.float32))
    np.savez(folder / "archive.npz", image=image)
    (folder / "archive.npz").rename(folder / "archive.npy")
    png_header(folder / "bomb.png", 15000, 15000)  # above PIL's own limit: DecompressionBombError
    png_header(folder / "large.png", 5000, 5000)  # under PIL's limit, over ours
    pixels = (image[0] * 255).astype(np.uint8)
    alpha = np.full((4, 4), 255, dtype=np.uint8)
    alpha[2, 3] = 128
    Image.fromarray(np.stack([pixels, alpha], -1), "LA").save(folder / "translucent.png")
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return {
        "nan": ("nan.npy", ["NaN or infinite", "(0, 1, 2)"]),
        "big": ("big.npy", ["NaN or infinite", "float32"]),
        "strings": ("strings.npy", ["strings"]),
        "complex": ("complex.npy", ["complex", "imaginary"]),
        "records": ("records.npy", ["structured"]),
        "empty": ("empty.npy", ["empty"]),
        "archive": ("archive.npy", [".npz archive"]),
        "bomb": ("bomb.png", ["too large", f"{MAX_IMAGE_PIXELS:,}"]),
        "large": ("large.png", ["5000×5000", f"{MAX_IMAGE_PIXELS:,}"]),
        "translucent": ("translucent.png", ["LA", "transparent"]),
        "garbage": ("garbage.png", ["cannot read"]),
    }


def test_lint_names_each_broken_image_and_mask(folder: Path) -> None:
    cases = broken_images(folder)
    specs = [spec(folder, f"image-{name}", "ok.onnx", image=file) for name, (file, _) in cases.items()]
    specs += [spec(folder, f"mask-{name}", "ok.onnx", mask=file) for name, (file, _) in cases.items()]
    code, errors = lint_json(specs, folder)
    assert code == 1
    for name, (file, fragments) in cases.items():
        for role in ("image", "mask"):
            found = errors[f"{role}-{name}.mlr"]
            assert [d["code"] for d in found] == ["image-load-error"], (role, name, found)
            message = found[0]["message"]
            assert file in message and all(f in message for f in fragments), (role, name, message)


def test_check_refuses_a_nan_image_with_exit_1(folder: Path) -> None:
    """It passed lint (NaN compares false with the range) and ended in exit 2."""
    broken_images(folder)
    done = cli("check", str(spec(folder, "nan", "ok.onnx", image="nan.npy")), "--eps", "0.05", cwd=folder)
    assert done.returncode == 1, done.stderr
    assert "NaN or infinite" in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_grey_alpha_png_is_one_grey_channel_when_opaque(tmp_path: Path) -> None:
    """LA is grey + alpha: opaque alpha is dropped (1 channel, not 3); RGBA likewise gives RGB."""
    grey = RNG.integers(0, 256, size=(4, 5), dtype=np.uint8)
    opaque = np.full((4, 5), 255, dtype=np.uint8)
    Image.fromarray(np.stack([grey, opaque], -1), "LA").save(tmp_path / "la.png")
    read = read_image(tmp_path / "la.png")
    assert read.shape == (1, 4, 5)
    np.testing.assert_array_equal(read[0], grey.astype(np.float32) / np.float32(255))
    colour = RNG.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([colour, opaque[..., None]], -1), "RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").shape == (3, 4, 5)
    translucent = np.concatenate([colour, np.full((4, 5, 1), 200, dtype=np.uint8)], -1)
    Image.fromarray(translucent, "RGBA").save(tmp_path / "faded.png")
    with pytest.raises(UserError, match="RGBA image with 20 transparent"):
        read_mask(tmp_path / "faded.png")


def test_named_pipes_are_refused_without_blocking(folder: Path) -> None:
    """A FIFO with no writer blocks whoever opens it: lint never returned. Each file the spec
    names (image, mask, model, dataset index), the model card, and a model's external weights
    are refused before anything opens them."""
    for name in ("pipe.npy", "pipe.png", "pipe.onnx", "carded.card.json"):
        os.mkfifo(folder / name)
    dense(folder / "carded.onnx")
    weight = numpy_helper.from_array(RNG.normal(size=(16, 3)).astype(np.float32), "W")
    external = helper.make_model(
        helper.make_graph(
            [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])],
            "external",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
            [weight],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    onnx.save(external, folder / "external.onnx", save_as_external_data=True, location="weights.bin", size_threshold=0)
    (folder / "weights.bin").unlink()
    os.mkfifo(folder / "weights.bin")  # the weights the model names, now a pipe
    specs = [
        spec(folder, "image-npy", "ok.onnx", image="pipe.npy"),
        spec(folder, "image-png", "ok.onnx", image="pipe.png"),
        spec(folder, "mask", "ok.onnx", mask="pipe.png"),
        spec(folder, "model", "pipe.onnx"),
        spec(folder, "external", "external.onnx"),
        spec(folder, "card", "carded.onnx", target="cat"),
        folder / "dataset.mlr",
    ]
    (folder / "ds").mkdir()
    os.mkfifo(folder / "ds" / "index.json")
    specs[-1].write_text('model = "ok.onnx"\ndataset = "ds"\ncanvas = "test/0000"\ntarget = 3\nmask = other_digit\n')
    code, errors = lint_json(specs, folder)  # times out (fails) if anything opens a pipe
    assert code == 1
    expected = {
        "image-npy": ("image-load-error", "pipe.npy is a named pipe (FIFO), not a regular file"),
        "image-png": ("image-load-error", "pipe.png is a named pipe (FIFO), not a regular file"),
        "mask": ("image-load-error", "mask " + str(folder / "pipe.png") + " is a named pipe (FIFO)"),
        "model": ("model-load-error", "pipe.onnx is a named pipe (FIFO), not a regular file"),
        "external": ("model-load-error", "weights.bin is a named pipe (FIFO)"),
        "card": ("unknown-label", "no class named 'cat'"),  # an unreadable card is no card
        "dataset": ("file-not-found", "index.json is a named pipe (FIFO)"),
    }
    for name, (expected_code, fragment) in expected.items():
        found = errors[f"{name}.mlr"]
        assert [d["code"] for d in found] == [expected_code], (name, found)
        assert fragment in found[0]["message"], (name, found[0]["message"])


def test_the_bundled_specs_still_lint_clean() -> None:
    """The stricter load check (onnxruntime on every linted model) accepts the shipped models."""
    specs = sorted((REPO / "specs").glob("*.mlr"))
    code, errors = lint_json(specs, REPO)
    assert code == 0 and all(found == [] for found in errors.values()), errors


@pytest.mark.parametrize(
    "index",
    [
        '{"format": "mlrobust-double-mnist/1"}',  # no canvases
        '{"format": "mlrobust-double-mnist/1", "seed": 0, "mask_threshold": 0.1, "canvases": [{"id": "test/0000"}]}',
        '{"format": "mlrobust-double-mnist/1", "seed": 0, "mask_threshold": 0.1, "canvases":'
        ' [{"id": 7, "split": "test", "image": "a.png", "labels": ["3", 5], "objects": []}]}',
        "[1, 2]",
        '"\\u0000"',
    ],
)
def test_a_malformed_dataset_index_is_a_user_error(tmp_path: Path, index: str) -> None:
    from mlrobust.data.index import load_index

    (tmp_path / "index.json").write_text(index)
    with pytest.raises(UserError) as raised:
        load_index(tmp_path)
    assert "index.json" in str(raised.value)


def test_a_dataset_index_that_is_not_utf8_is_a_user_error(tmp_path: Path) -> None:
    from mlrobust.data.index import load_index

    (tmp_path / "index.json").write_bytes(b'{"format": "\xff"}')
    with pytest.raises(UserError, match="not valid JSON"):
        load_index(tmp_path)
