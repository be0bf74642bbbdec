"""Training parts: the L0 rectangles, PGD, the top-2 violation, and a tiny end-to-end export."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlrobust.data.canvas import compose
from mlrobust.models.architecture import Architecture, build_classifier
from mlrobust.models.card import read_card
from mlrobust.models.export import check_against_torch, export_onnx
from mlrobust.models.pgd import bce_loss, pgd_linf, top2_set_violation
from mlrobust.models.recipes import RECIPES, L0Defence
from mlrobust.models.train import paste_black_rectangles, train_classifier


def test_black_rectangles_have_documented_sizes_and_touch_nothing_else() -> None:
    rng = np.random.default_rng(0)
    images = np.full((200, 64, 64), 0.5, dtype=np.float32)
    defence = L0Defence(min_side=8, max_side=16)
    pasted = paste_black_rectangles(images, defence, rng)
    for before, after in zip(images, pasted, strict=True):
        rows, cols = np.nonzero(after != before)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 8 <= height <= 16 and 8 <= width <= 16
        assert len(rows) == height * width  # one solid rectangle
        assert np.all(after[rows, cols] == 0)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, (1, 10), elements=st.floats(-20, 20, width=32)), st.permutations(range(10)))
def test_top2_violation_is_negative_exactly_when_the_set_is_kept(logits, order) -> None:
    labels = torch.tensor([sorted(order[:2])])
    violation = top2_set_violation(torch.from_numpy(logits), labels).item()
    others = np.delete(logits[0], labels[0].numpy())
    kept = logits[0, labels[0].numpy()].min() > others.max()
    assert (violation < 0) == kept


def test_pgd_stays_in_the_ball_and_the_range_and_raises_the_loss(pools) -> None:
    torch.manual_seed(0)
    model = build_classifier(Architecture()).eval()
    batch = compose(pools["test"], 64, np.random.default_rng(0))
    x = torch.from_numpy(batch.images[:, None])
    y = torch.from_numpy(batch.multi_hot())
    adv = pgd_linf(model, x, y, bce_loss, eps=0.1, steps=10, step_size=0.02)
    assert torch.all((adv - x).abs() <= 0.1 + 1e-6)
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert bce_loss(model(adv), y).mean() > bce_loss(model(x), y).mean()


def test_tiny_training_run_exports_a_checked_model(pools, tmp_path: Path) -> None:
    from mlrobust.models.recipes import FineTune

    stages = FineTune(epochs=1, max_lr=1e-3, clean_weight=0.6)  # both stages, each cut short
    recipe = dataclasses.replace(RECIPES["pgd"], epochs=2, canvases_per_epoch=512, finetune=stages)
    trained = train_classifier(recipe, Architecture(), pools["train"], seed=1)
    images = compose(pools["test"], 32, np.random.default_rng(1)).images[:, None]
    check = export_onnx(trained.model, tmp_path / "m.onnx", images)
    assert check.passed and check.max_abs_diff < 1e-4
    other = build_classifier(Architecture()).eval()  # a different network must not pass the check
    assert not check_against_torch(other, tmp_path / "m.onnx", images).passed


def test_missing_card_is_a_user_error(tmp_path: Path) -> None:
    import pytest

    from mlrobust.errors import UserError

    with pytest.raises(UserError, match="no model card"):
        read_card(tmp_path / "absent.onnx")


def test_sigmoid_kl_is_zero_at_the_reference_and_positive_elsewhere() -> None:
    from mlrobust.models.pgd import sigmoid_kl

    reference = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sigmoid_kl(reference, reference), torch.zeros(8), atol=1e-7)
    assert torch.all(sigmoid_kl(reference, reference + 0.5) > 0)


def test_madry_and_trades_losses_both_train(pools) -> None:
    from mlrobust.models.train import pgd_training_loss

    batch = compose(pools["train"], 16, np.random.default_rng(0))
    x, y = torch.from_numpy(batch.images[:, None]), torch.from_numpy(batch.multi_hot())
    defence = RECIPES["pgd"].pgd
    assert defence is not None
    for variant in (dataclasses.replace(defence, trades_beta=None), dataclasses.replace(defence, trades_beta=3.0)):
        torch.manual_seed(0)
        model = build_classifier(Architecture())
        loss = pgd_training_loss(model, x, y, variant, 0.05, torch.Generator().manual_seed(0))
        loss.backward()
        assert torch.isfinite(loss) and loss > 0
        assert all(p.grad is not None for p in model.parameters())


def test_retraining_keeps_the_replaced_model_in_the_card_history(tmp_path: Path) -> None:
    import shutil

    from mlrobust.models.card import card_path, write_card
    from mlrobust.models.pipeline import _history_after_replacing

    committed = Path(__file__).resolve().parents[1] / "models" / "double_mnist_pgd.onnx"
    path = tmp_path / committed.name
    shutil.copy(committed, path)
    old = read_card(committed)
    write_card(path, old)
    history = _history_after_replacing(path, "a better recipe")
    assert history[:-1] == old.get("history", [])  # earlier history carries over, in order
    entry = history[-1]
    assert entry["sha256"] == old["onnx"]["sha256"] and entry["reason"] == "a better recipe"
    assert entry["exact_top2_accuracy"] == old["evaluation"]["exact_top2_accuracy"]
    new = {**old, "onnx": {**old["onnx"], "sha256": "0" * 64}, "history": history}
    write_card(path, new)
    markdown = path.with_suffix(".md").read_text()
    assert "## History" in markdown and old["onnx"]["sha256"] in markdown
    assert read_card(path)["history"] == history
    assert _history_after_replacing(tmp_path / "fresh.onnx", "x") == []
    assert not card_path(tmp_path / "fresh.onnx").exists()


def test_clean_weight_mixes_the_clean_loss_into_madry(pools) -> None:
    from mlrobust.models.train import pgd_training_loss

    batch = compose(pools["train"], 16, np.random.default_rng(0))
    x, y = torch.from_numpy(batch.images[:, None]), torch.from_numpy(batch.multi_hot())
    defence = RECIPES["pgd"].pgd
    assert defence is not None
    torch.manual_seed(0)
    model = build_classifier(Architecture())
    with torch.no_grad():
        clean = bce_loss(model(x), y).mean()
    losses = {}
    for weight in (0.0, 0.5, 1.0):
        variant = dataclasses.replace(defence, clean_weight=weight)
        losses[weight] = pgd_training_loss(model, x, y, variant, 0.1, torch.Generator().manual_seed(0)).item()
    assert losses[1.0] == pytest.approx(clean.item(), rel=1e-6)  # all clean: the attack does not count
    assert losses[0.0] > clean.item()  # PGD points cost more than clean ones
    assert losses[0.5] == pytest.approx((losses[0.0] + losses[1.0]) / 2, rel=1e-5)


def test_a_second_stage_run_later_from_saved_weights_equals_the_two_stage_recipe(pools) -> None:
    from mlrobust.models.recipes import FineTune
    from mlrobust.models.train import finetune

    stage_one = dataclasses.replace(RECIPES["pgd"], epochs=1, canvases_per_epoch=256, finetune=None)
    two_stage = dataclasses.replace(stage_one, finetune=FineTune(epochs=1, max_lr=1e-3, clean_weight=0.5))
    epochs: list[int] = []
    both = train_classifier(two_stage, Architecture(), pools["train"], seed=3, progress=lambda e, _: epochs.append(e))
    assert epochs == [0, 1]  # numbered on through the second stage
    first = train_classifier(stage_one, Architecture(), pools["train"], seed=3)
    before = {name: value.clone() for name, value in first.model.state_dict().items()}
    later = finetune(first.model, two_stage, pools["train"], seed=3)
    after = later.model.state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)  # the stage trained
    for name, value in both.model.state_dict().items():
        assert torch.equal(value, after[name]), name
    with pytest.raises(ValueError, match="no PGD fine-tuning stage"):
        finetune(first.model, stage_one, pools["train"], seed=3)


def test_a_clean_weight_that_would_be_ignored_or_is_no_share_is_refused() -> None:
    from mlrobust.models.recipes import PgdDefence

    with pytest.raises(ValueError, match="TRADES"):
        PgdDefence(trades_beta=3.0, clean_weight=0.5)  # TRADES's loss never reads it
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PgdDefence(clean_weight=1.5)
    assert PgdDefence(trades_beta=3.0).clean_weight == 0.0 and PgdDefence(clean_weight=0.6).clean_weight == 0.6
