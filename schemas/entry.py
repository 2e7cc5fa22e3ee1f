"""A zoo entry: a named model config plus its weights, the numbers it must reproduce, and its recipes."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from .base import Schema
from .errors import FieldErrors
from .kernels import DType
from .models import ModelConfig

SCHEMA_VERSION = 1
LM_EVAL_PREFIX = "lm-eval:"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class WeightsSpec(Schema):
    """One set of weights for the entry; the first listed is the default (`name` = `name.<first tag>`)."""

    tag: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    source: str = Field(pattern=r"^(hf-hub:[\w.-]+/[\w.-]+|local-dir:.+|zoo-data:[\w.-]+|torch-hub:[\w.-]+)$")
    """`hf-hub:ORG/NAME` (read offline from the Hugging Face cache), `local-dir:PATH`, `zoo-data:NAME` (a checkpoint
    directory shipped in the package's zoo/data), or `torch-hub:FILE` (a
    published Vision-LSTM file read offline from `$TORCH_HOME/hub/checkpoints/`)."""
    revision: Optional[str] = None
    files: dict[str, Optional[Sha256]] = {}
    """File name -> sha256 (hex) checked on load; null when not recorded."""
    license: str
    dtype: Optional[DType] = None
    """Dtype the weights are stored in."""
    description: str = ""


class Result(Schema):
    """A number the entry must reproduce (or that its source reports)."""

    task: str
    """What was measured; `lm-eval:NAME` names an lm-evaluation-harness task, which `reproduce` runs."""
    dataset: str
    metric: str
    """For an lm-eval task, a metric of its results (`acc`, `acc_norm`, `bits_per_byte`, or `metric,filter`)."""
    value: float
    tolerance: float = Field(0.0, ge=0)
    """|measured - value| <= tolerance passes; for `min`/`max` bounds see `compare`."""
    compare: Literal["within", "at_least", "at_most"] = "within"
    """within: |measured - value| <= tolerance; at_least: measured >= value - tolerance; at_most: <= value + tolerance."""
    status: Literal["reproduced", "reported"] = "reported"
    """reproduced: our own runs establish it and CI re-checks it; reported: quoted from `source`."""
    source: str = ""
    recipe: Optional[str] = None
    """Key in the entry's `recipes` that reproduces this number."""
    weights: Optional[str] = None
    """Weights tag the number belongs to."""
    num_fewshot: Optional[int] = Field(None, ge=0)
    """Few-shot examples of an lm-eval task (None: the task's default)."""
    notes: str = ""

    @property
    def lm_eval_task(self) -> Optional[str]:
        """The lm-eval task name of `task: lm-eval:NAME`, else None."""
        return self.task[len(LM_EVAL_PREFIX):] if self.task.startswith(LM_EVAL_PREFIX) else None


Capability = Literal["generate", "stateful-step", "train", "hf-interop", "nx-ai-interop"]


class ZooEntry(Schema):
    """One model of the zoo, as written in zoo/<name>.yaml."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    description: str
    paper: Optional[str] = None
    model: ModelConfig
    weights: list[WeightsSpec] = []
    results: list[Result] = []
    recipes: dict[str, str] = {}
    """Role (train, eval, reproduce, ...) -> recipe file, relative to the entry file."""
    capabilities: list[Capability] = []

    @model_validator(mode="after")
    def _check(self) -> "ZooEntry":
        errors = FieldErrors()
        tags = [w.tag for w in self.weights]
        for j, tag in enumerate(tags):
            if tag in tags[:j]:
                errors.add(("weights", j, "tag"), f"expected unique weight tags, got {tag!r} twice")
        for j, result in enumerate(self.results):
            if result.recipe is not None and result.recipe not in self.recipes:
                errors.add(("results", j, "recipe"), f"expected one of the entry's recipes {sorted(self.recipes)}, "
                           f"got {result.recipe!r}")
            if result.weights is not None and result.weights not in tags:
                errors.add(("results", j, "weights"), f"expected one of the weight tags {tags}, got {result.weights!r}")
            if result.task.startswith(LM_EVAL_PREFIX) and not result.lm_eval_task:
                errors.add(("results", j, "task"), f"expected {LM_EVAL_PREFIX}TASK_NAME, got {result.task!r}")
            if result.num_fewshot is not None and not result.lm_eval_task:
                errors.add(("results", j, "num_fewshot"), f"expected a task {LM_EVAL_PREFIX}NAME with num_fewshot, "
                           f"got task {result.task!r}")
            if result.lm_eval_task and result.status == "reproduced" and result.recipe is None and not self.weights:
                errors.add(("results", j, "recipe"), "expected the recipe that trains the model (or entry weights) "
                           "for a reproduced lm-eval result, got none")
        errors.raise_if_any()
        return self

    def weights_for(self, tag: Optional[str]) -> WeightsSpec:
        if not self.weights:
            raise LookupError(f"zoo entry {self.name!r} has no weights")
        if tag is None:
            return self.weights[0]
        for spec in self.weights:
            if spec.tag == tag:
                return spec
        raise LookupError(f"zoo entry {self.name!r} has no weights tagged {tag!r} "
                          f"(tags: {', '.join(w.tag for w in self.weights)})")


class ModelDocument(Schema):
    """Just a model config (a config object, a dict, or a YAML file holding only `model:`)."""

    model: ModelConfig
