"""The `series` data kind: windows, the objective and the forecast metrics, checked against independent
pandas / numpy computations on statsmodels' CO2 series, and the `xlstm-zoo reproduce xlstm-forecast-co2`
acceptance run (300 training steps, about 25 s of one core)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from statsmodels.datasets import co2  # the timeseries extra, part of [dev]

from reproducing import reproduce
from xlstm_zoo.registry.pipelines.evaluate import evaluate
from xlstm_zoo.registry.data.series import SeriesTask, pinball, seasonal_naive
from xlstm_zoo.schemas.recipe import SeriesData


@pytest.fixture(scope="module")
def task():
    return SeriesTask(SeriesData(series="statsmodels:co2", context_length=100, min_context=60))


def test_split_and_mase_scale_match_pandas(task):
    s = co2.load_pandas().data["co2"]
    train = s.iloc[:-104]
    assert len(s) == 2284 and int(s.isna().sum()) == 59
    np.testing.assert_array_equal(task.test, s.to_numpy()[-104:])
    assert task.mase_scale == pytest.approx((train - train.shift(52)).abs().mean(), rel=1e-12)


def test_training_windows(task):
    batch = task.train_batch(3, 7, 16)
    again = task.train_batch(3, 7, 16)
    assert batch.inputs.shape == (16, 100) and batch.targets.shape == (16, 104)
    torch.testing.assert_close(batch.inputs, again.inputs, equal_nan=True)  # a pure function of (seed, step)
    train = np.nan_to_num(task.train, nan=-1.0)  # NaN-safe comparison
    windows = np.lib.stride_tricks.sliding_window_view(train, 104)
    for row in range(16):  # history, then the 104 steps that follow it in the training part
        target = np.nan_to_num(batch.targets[row].double().numpy(), nan=-1.0)
        (end,) = np.flatnonzero(np.abs(windows - target).max(1) < 1e-4)
        history = np.full(100, -1.0)
        history[max(0, 100 - end):] = train[max(0, end - 100):end]
        np.testing.assert_allclose(np.nan_to_num(batch.inputs[row].double().numpy(), nan=-1.0), history, atol=1e-4)
        assert end >= 60


def test_pinball_and_seasonal_naive():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 3.0]]])  # (B=1, Q=2, H=2)
    target = torch.tensor([[2.0, 2.0]])
    loss = pinball(pred, target, torch.tensor([0.1, 0.9]))
    torch.testing.assert_close(loss, torch.tensor([[[0.1, 0.0], [0.1, 0.1]]]))  # under: tau * d; over: (1 - tau) * -d
    history = np.array([1, 2, 3, 4, np.nan, 6.0])
    np.testing.assert_array_equal(seasonal_naive(history, 5, 3), [4, 2, 6, 4, 2])  # NaN takes its phase's last value


class Fixed(torch.nn.Module):
    """A 'forecaster' that always predicts the same values at every level."""

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.values = values
        self.config = SimpleNamespace(kind="fixed", quantiles=[0.1, 0.5, 0.9], horizon=len(values))

    def forward(self, context, length=None):
        length = length or len(self.values)
        return self.values[None, None, :length].expand(context.shape[0], 3, length)


def test_metrics_of_a_perfect_and_of_the_naive_forecaster(task):
    perfect = Fixed(torch.tensor(task.test, dtype=torch.float32))
    task.check_model(perfect.config)
    metrics = evaluate(perfect, task, 1, None, torch.device("cpu"), "fp32")
    assert metrics["val_mase"] == 0 and metrics["val_quantile_loss"] == 0 and metrics["val_relative_mase"] == 0
    naive = Fixed(torch.tensor(seasonal_naive(task.train, 104, 52), dtype=torch.float32))
    metrics = evaluate(naive, task, 1, None, torch.device("cpu"), "fp32")
    assert metrics["val_relative_mase"] == pytest.approx(1.0)
    assert metrics["val_seasonal_naive_mase"] == pytest.approx(1.40085, abs=1e-4)
    assert metrics["val_quantile_loss"] == pytest.approx(metrics["val_seasonal_naive_quantile_loss"])
    errors = np.abs(naive.values.numpy() - task.test)  # WQL of a point forecast: every level's pinball, weighted
    wql = np.mean([2 * np.sum(np.where(naive.values.numpy() < task.test, q, 1 - q) * errors) / np.abs(task.test).sum()
                   for q in (0.1, 0.5, 0.9)])
    assert metrics["val_wql"] == pytest.approx(wql, rel=1e-5)


def test_model_must_forecast_the_held_out_length(task):
    with pytest.raises(ValueError, match="model.horizon: expected the data's test_length 104, got 52"):
        task.check_model(Fixed(torch.zeros(52)).config)
    with pytest.raises(ValueError, match="model.kind: xlstm-lm is not a forecaster"):
        task.check_model(SimpleNamespace(kind="xlstm-lm", vocab_size=10))


def test_reproduce_xlstm_forecast_co2(tmp_path):
    # One thread: the model's matrices are tiny (batch 32 x width 64), a second thread buys nothing, and on a
    # busy machine it cost 6x (60 steps: 16 s on one thread, 94 s on two). The numbers do not depend on it.
    rows = [line for line in reproduce("xlstm-forecast-co2", tmp_path, threads=1) if line.startswith("| forecasting")]
    assert len(rows) == 6 and all(row.endswith("| PASS |") for row in rows), rows
    assert any("val_relative_mase" in row and "<= 1" in row for row in rows)
