"""The base of every schema: unknown keys are errors, and every component names its `kind`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """A validated config node. Unknown keys are rejected so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


def round_up(x: float, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= x (x may be a float, as in the references)."""
    return int(-(-x // multiple) * multiple)
