"""The digits entries: vil-digits and xlstm-digits-gen reproduce their recorded numbers on the CPU, and the
KID / precision-recall computation equals torch-fidelity's (numbers recorded in a fixture made with it)."""

from pathlib import Path

import pytest
import torch

from xlstm_zoo import build_model
from xlstm_zoo.registry.data import make_task
from xlstm_zoo.registry.data.digits import LEVELS, sample_digits
from xlstm_zoo.registry.data.fidelity import kid, precision_recall
from xlstm_zoo.registry.pipelines.cli import reproduce_main
from xlstm_zoo.schemas.recipe import DigitsData, DigitsPixelsData

FIDELITY = Path(__file__).parent / "fixtures" / "fidelity" / "reference.pt"


def test_scores_equal_torch_fidelity():
    """Same subsets (numpy RandomState), same kernel and k-NN balls: KID to float32-vs-float64 rounding, the
    precision/recall counts exactly."""
    ref = torch.load(FIDELITY, weights_only=True)
    settings = ref["settings"]
    mean, std = kid(ref["generated"], ref["real"], settings["kid_subset_size"], settings["rng_seed"])
    assert mean == pytest.approx(ref["kid"], rel=1e-5) and std == pytest.approx(ref["kid_std"], rel=1e-4)
    assert precision_recall(ref["generated"], ref["real"], settings["prc_neighborhood"]) == (
        ref["precision"], ref["recall"])


def test_digits_split_is_stratified_and_tasks_check_the_model():
    task = make_task(DigitsData())
    assert (len(task.x_train), len(task.x_test)) == (1437, 360)
    per_class = torch.bincount(torch.cat([task.y_train, task.y_test]))
    assert (torch.bincount(task.y_test) - 0.2 * per_class).abs().max() <= 1  # 20% of each class
    assert task.x_train.shape[1:] == (1, 8, 8) and 0 <= task.x_train.min() and task.x_train.max() == 1
    with pytest.raises(ValueError, match="model.image_shape"):
        task.check_model(build_model("vil-tiny", device="meta").config)
    with pytest.raises(ValueError, match="model.kind: vil takes no token ids"):
        make_task(DigitsPixelsData()).check_model(build_model("vil-digits", device="meta").config)


def test_pixel_sequences_and_samples():
    task = make_task(DigitsPixelsData())
    batch = task.train_batch(0, 1, 4)
    assert batch.inputs.shape == batch.targets.shape == (4, 64)
    assert (batch.inputs[:, 0] >= LEVELS).all() and (batch.targets < LEVELS).all()  # class token, then pixels
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    torch.manual_seed(0)
    model = build_model("xlstm-digits-gen").eval()
    images = sample_digits(model, task.first_tokens(torch.arange(5)), torch.Generator().manual_seed(0),
                           torch.device("cpu"))
    assert images.shape == (5, 8, 8) and images.max() < LEVELS and images.unique().numel() > 5


@pytest.mark.parametrize("name,passes", [("vil-digits", 1), ("xlstm-digits-gen", 7)])
def test_reproduce(name, passes, tmp_path, capsys):
    """`xlstm-zoo reproduce`: every recorded number re-established (about 1 and 1.5 CPU minutes)."""
    code = reproduce_main([name, "--out", str(tmp_path)])
    table = capsys.readouterr().out
    assert code == 0 and table.count("| PASS |") == passes, table
