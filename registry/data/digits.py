"""scikit-learn's bundled digits (8x8, 1,797 images, 10 classes; no network): classification and pixel-by-pixel
generation on one fixed stratified train/test split.

Images are gray levels 0-16. The classifier reads them as (1, 8, 8) in [0, 1]; the generator as 64 tokens
(0-16) after a class token (17 + class) or, unconditionally, a start token (17).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import torch

from ...schemas.recipe import DigitsData, DigitsPixelsData, DigitsSplit
from .batch import Batch, Task, step_rng

LEVELS = 17
"""Gray levels 0..16 of the digits images, one token each."""
SIDE = 8
CLASSES = 10


@lru_cache(maxsize=4)
def _split(test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ImportError("the digits data need scikit-learn: pip install 'xlstm-zoo[vision]'") from exc
    digits = load_digits()
    images = digits.images.astype(np.int64)
    return tuple(train_test_split(images, digits.target, test_size=test_fraction, stratify=digits.target,
                                  random_state=seed))


def digits_split(config: DigitsSplit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels); images (N, 8, 8) int64 gray levels 0-16."""
    x_train, x_test, y_train, y_test = _split(config.test_fraction, config.split_seed)
    return tuple(torch.from_numpy(a) for a in (x_train, y_train, x_test, y_test))


def to_pixels(levels: torch.Tensor) -> torch.Tensor:
    """Gray levels (N, 8, 8) -> the classifier's input (N, 1, 8, 8) in [0, 1]."""
    return (levels.float() / (LEVELS - 1)).unsqueeze(1)


def _shifted(images: torch.Tensor, rng: np.random.Generator, shift: int) -> torch.Tensor:
    """Each image moved by up to `shift` pixels along each axis, zero filled."""
    padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
    offsets = rng.integers(0, 2 * shift + 1, (len(images), 2))
    return torch.stack([p[..., dy:dy + SIDE, dx:dx + SIDE] for p, (dy, dx) in zip(padded, offsets)])


@torch.no_grad()
def sample_digits(model: torch.nn.Module, first: torch.Tensor, generator: torch.Generator, device: torch.device,
                  temperature: float = 1.0) -> torch.Tensor:
    """Gray-level images (N, 8, 8) drawn from an autoregressive model, one pixel per step after `first` (N,)
    (the model's recurrent state carries the prefix); only the 17 gray-level tokens can be drawn."""
    logits, state = model(first[:, None].to(device))
    pixels = []
    for t in range(SIDE * SIDE):
        probs = torch.softmax(logits[:, -1, :LEVELS].float().cpu() / temperature, -1)
        pixels.append(torch.multinomial(probs, 1, generator=generator))
        if t + 1 < SIDE * SIDE:
            logits, state = model(pixels[-1].to(device), state)
    return torch.cat(pixels, 1).view(-1, SIDE, SIDE)


class DigitsTask(Task):
    """Classify the digits; the test split is the evaluation set."""

    chance = 1 / CLASSES

    def __init__(self, config: DigitsData):
        self.config = config
        x_train, self.y_train, x_test, self.y_test = digits_split(config)
        self.x_train, self.x_test = to_pixels(x_train), to_pixels(x_test)

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        rng = step_rng(seed, step)
        rows = torch.from_numpy(rng.integers(0, len(self.x_train), batch_size))
        images = self.x_train[rows]
        if self.config.shift:
            images = _shifted(images, rng, self.config.shift)
        return Batch(images, self.y_train[rows])

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.x_test), batch_size):
            yield Batch(self.x_test[start:start + batch_size], self.y_test[start:start + batch_size])

    def check_model(self, config) -> None:
        shape = tuple(getattr(config, "image_shape", ()))
        if shape != (1, SIDE, SIDE):
            raise ValueError(f"model.image_shape: the digits are (1, {SIDE}, {SIDE}) images, got "
                             f"{list(shape) or f'a model of kind {config.kind}'}")
        if config.num_classes < CLASSES:
            raise ValueError(f"model.num_classes: expected at least {CLASSES}, got {config.num_classes}")


class DigitsPixelsTask(Task):
    """Next-pixel prediction over the 64 gray levels of each image, row by row; scored by sampling images."""

    def __init__(self, config: DigitsPixelsData):
        self.config = config
        self.x_train, self.y_train, self.x_test, self.y_test = digits_split(config)
        self.vocab_size = LEVELS + (CLASSES if config.conditional else 1)

    def first_tokens(self, labels: torch.Tensor) -> torch.Tensor:
        """The token each sequence starts with: its class (conditional) or the start token."""
        return LEVELS + (labels if self.config.conditional else torch.zeros_like(labels))

    def _batch(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        sequence = torch.cat([self.first_tokens(labels)[:, None], images.flatten(1)], 1)
        return Batch(sequence[:, :-1], sequence[:, 1:])

    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        rows = torch.from_numpy(step_rng(seed, step).integers(0, len(self.x_train), batch_size))
        return self._batch(self.x_train[rows], self.y_train[rows])

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.x_test), batch_size):
            yield self._batch(self.x_test[start:start + batch_size], self.y_test[start:start + batch_size])

    def model_metrics(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """KID and precision/recall of sampled images against the test images; `real_*`: the same numbers for
        as many real training images (what a generator reproducing the data distribution would score)."""
        from .fidelity import score_images

        c = self.config
        generator = torch.Generator().manual_seed(c.seed)
        labels = torch.arange(c.samples) % CLASSES
        samples = sample_digits(model, self.first_tokens(labels), generator, device, c.temperature)
        real = self.x_train[torch.randperm(len(self.x_train), generator=generator)[:c.samples]]
        kwargs = dict(extractor=c.feature_extractor, kid_subset_size=c.kid_subset_size,
                      neighborhood=c.prc_neighborhood, seed=c.seed)
        generated = score_images(samples, self.x_test, **kwargs)
        reference = score_images(real, self.x_test, **kwargs)
        return {**generated, **{f"real_{name}": value for name, value in reference.items()}}
