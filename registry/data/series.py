"""Forecasting a bundled univariate series: training windows from its past, scored on its last steps.

A training batch is `inputs` (B, context_length) of history (NaN where missing or before the series
starts) and `targets` (B, test_length) of the values that follow; windows end at uniformly drawn points
of the training part, a pure function of (seed, step). The model is any forecaster whose
`forward(context, prediction_length)` returns quantiles (B, Q, prediction_length), e.g. the `tirex` kind.

The score is the forecast of the held-out last `test_length` steps from all steps before them:
- MASE: mean absolute error of the median over the in-sample mean absolute seasonal difference
  (lag season_length, training part, missing values skipped);
- quantile_loss: mean pinball loss over the quantile levels and steps, in the series' units; WQL: its sum
  over steps, x 2 / sum |y| (GluonTS's weighted quantile loss), averaged over levels;
- the same for the seasonal-naive forecast (the last observed season repeated; every level = that value),
  and `relative_mase` = MASE / the baseline's MASE (below 1: the model beats seasonal naive).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ...schemas.recipe import SeriesData
from .batch import Batch, Task, step_rng


def load_series(name: str) -> np.ndarray:
    """A bundled series as float64 with NaN for missing values (nothing is downloaded)."""
    if name == "statsmodels:co2":
        try:
            from statsmodels.datasets import co2
        except ImportError:
            raise ImportError("data.series statsmodels:co2 needs statsmodels: pip install 'xlstm-zoo[timeseries]'") from None
        return co2.load_pandas().data["co2"].to_numpy(dtype=np.float64)
    raise ValueError(f"data.series: unknown series {name!r}")  # pragma: no cover - the schema admits no other


def pinball(pred: torch.Tensor, target: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Pinball loss of quantile forecasts pred (B, Q, H) for targets (B, H) at levels (Q,), elementwise."""
    diff = target.unsqueeze(1) - pred
    tau = levels.view(1, -1, 1)
    return torch.maximum(tau * diff, (tau - 1) * diff)


def nan_std(x: torch.Tensor) -> torch.Tensor:
    """(B, 1) standard deviation of each row over its observed values (1 when none is), at least 1e-5."""
    centred = x - torch.nanmean(x, 1, keepdim=True)
    return torch.nan_to_num(torch.nanmean(centred.square(), 1, keepdim=True).sqrt(), nan=1.0).clamp_min(1e-5)


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last season repeated; a missing value takes the latest observed one of its phase."""
    filled = history.copy()
    for t in range(season, len(filled)):
        if np.isnan(filled[t]):
            filled[t] = filled[t - season]
    last = filled[-season:]
    return np.resize(last, horizon)


class SeriesTask(Task):
    quantiles: list[float]
    """The model's quantile levels (set by check_model)."""

    def __init__(self, config: SeriesData):
        self.config = config
        values = load_series(config.series)
        if len(values) <= config.test_length + config.min_context:
            raise ValueError(f"data.test_length: {config.series} has {len(values)} steps, too few for "
                             f"{config.test_length} held out after min_context {config.min_context}")
        self.train = values[: len(values) - config.test_length]
        self.test = values[len(values) - config.test_length:]
        season = config.season_length
        diffs = np.abs(self.train[season:] - self.train[:-season])
        self.mase_scale = float(np.nanmean(diffs))

    def _window(self, end: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        context = np.full(c.context_length, np.nan)
        past = self.train[max(0, end - c.context_length): end]
        context[c.context_length - len(past):] = past
        return context, self.train[end: end + c.test_length]

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        c = self.config
        ends = step_rng(seed, step).integers(c.min_context, len(self.train) - c.test_length + 1, batch_size)
        contexts, targets = zip(*(self._window(int(e)) for e in ends))
        return Batch(torch.tensor(np.stack(contexts), dtype=torch.float32),
                     torch.tensor(np.stack(targets), dtype=torch.float32))

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        yield Batch(torch.tensor(self.train[None], dtype=torch.float32), torch.tensor(self.test[None], dtype=torch.float32))

    def check_model(self, config) -> None:
        """The model must forecast quantiles for the held-out length; remembers its quantile levels."""
        if not hasattr(config, "quantiles") or not hasattr(config, "horizon"):
            raise ValueError(f"model.kind: {config.kind} is not a forecaster (e.g. kind tirex); this recipe's data "
                             "is a series")
        if config.horizon != self.config.test_length:
            raise ValueError(f"model.horizon: expected the data's test_length {self.config.test_length}, "
                             f"got {config.horizon}")
        self.quantiles = list(config.quantiles)

    def _levels(self, device) -> torch.Tensor:
        return torch.tensor(self.quantiles, device=device)

    def loss(self, model, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pinball loss summed over levels and observed target steps, each series' in units of its context's
        standard deviation (so every window weighs alike whatever its level); count = observed steps x levels."""
        return self._scaled_pinball(model(inputs, targets.shape[1]), targets, nan_std(inputs))

    def _scaled_pinball(self, pred, targets, scale):
        observed = ~torch.isnan(targets)
        losses = pinball(pred.float(), torch.nan_to_num(targets), self._levels(pred.device)) / scale.unsqueeze(1)
        return (losses * observed.unsqueeze(1)).sum(), observed.sum() * len(self.quantiles)

    def batch_stats(self, output: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Sums over the evaluation series (`output` = the model's forecast from the whole training part):
        absolute errors of the median and of seasonal naive, pinball losses per level of both, |y|, and the
        training objective."""
        levels = self._levels(output.device)
        naive = torch.tensor(seasonal_naive(self.train, targets.shape[1], self.config.season_length),
                             dtype=torch.float32, device=output.device).expand_as(targets)
        median = output[:, int(torch.argmin((levels - 0.5).abs()))]
        history = torch.tensor(self.train[None], dtype=torch.float32, device=output.device)
        loss, count = self._scaled_pinball(output, targets, nan_std(history))
        stats = {"loss": loss.item(), "loss_count": count.item(), "steps": targets.numel(),
                 "abs_y": targets.abs().sum().item()}
        for name, point, quantiles in (("", median, output), ("seasonal_naive_", naive, naive.unsqueeze(1).expand_as(output))):
            stats[f"{name}abs_err"] = (point - targets).abs().sum().item()
            for j, level in enumerate(pinball(quantiles, targets, levels).transpose(0, 1).flatten(1).sum(1)):
                stats[f"{name}pinball_{j}"] = level.item()
        return stats

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = {"loss": totals["loss"] / totals["loss_count"]}
        Q = len(self.quantiles)
        for name in ("", "seasonal_naive_"):
            per_level = [totals[f"{name}pinball_{j}"] for j in range(Q)]
            metrics[f"{name}mase"] = totals[f"{name}abs_err"] / totals["steps"] / self.mase_scale
            metrics[f"{name}quantile_loss"] = sum(per_level) / (Q * totals["steps"])
            metrics[f"{name}wql"] = sum(2 * p / totals["abs_y"] for p in per_level) / Q
        metrics["relative_mase"] = metrics["mase"] / metrics["seasonal_naive_mase"]
        return metrics
