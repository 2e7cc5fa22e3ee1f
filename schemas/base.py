"""The base of every schema: unknown keys are errors, and every component names its `kind`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Upper bounds of model sizes. A typo (an extra digit, a pasted byte count) must be refused at its key with
# a position, not build for hours or overflow torch's size arithmetic. Each bound is several times the
# largest published language model's value (widths ~25k, depths ~130 blocks, vocabularies ~1M tokens,
# up-projection factors ~8), so no real model is refused, and the largest model they allow still builds
# on `meta` in seconds (the builder then checks its bytes against the device: registry/factory.py).
MAX_WIDTH = 65536
"""embedding_dim (and the up-projection rounding multiples); also feature sizes, image sides and patch sizes."""
MAX_BLOCKS = 512
MAX_VOCAB = 2**24
MAX_FACTOR = 16.0
"""Up-projection and q/k/v width factors."""
MAX_KERNEL = 1024
"""Causal convolution kernel sizes."""
MAX_LENGTH = 2**24
"""Forecast contexts and horizons (sized buffers and rollouts, not weights)."""


class Schema(BaseModel):
    """A validated config node. Unknown keys are rejected so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


def round_up(x: float, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= x (x may be a float, as in the references)."""
    return int(-(-x // multiple) * multiple)
