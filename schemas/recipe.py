"""A recipe: everything needed to train and evaluate one model, as a validated document (torch-free)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from .base import Schema
from .errors import FieldErrors

FORMAL_TASKS = ("parity", "even_pairs", "cycle_navigation", "modular_arithmetic")


class Lengths(Schema):
    """An inclusive range of sequence lengths; each sample draws its length uniformly from it."""

    min: int = Field(ge=2)
    max: int = Field(ge=2)

    @model_validator(mode="after")
    def _ordered(self) -> Lengths:
        errors = FieldErrors()
        if self.min > self.max:
            errors.add(("max",), f"expected at least min ({self.min}), got {self.max}")
        errors.raise_if_any()
        return self


class ModelRef(Schema):
    name: str = Field(min_length=1)
    """A zoo name, a YAML path (relative to the recipe file) or `local-dir:PATH` (a checkpoint directory)."""
    overrides: dict[str, Any] = {}
    """Dotted keys applied to the entry, e.g. `model.slstm_at: []`."""
    pretrained: bool | str = False
    """Start from the entry's weights (a tag, or true for the default tag) instead of a fresh init."""


class FormalLanguageData(Schema):
    """A task of the xLSTM paper's formal-language suite, generated deterministically from seeds."""

    kind: Literal["formal-language"] = "formal-language"
    task: Literal[FORMAL_TASKS]
    vocab_size: int | None = Field(None, ge=3)
    """None takes the task's default (parity 3, even_pairs 3, cycle_navigation 10, modular_arithmetic 10)."""
    train_lengths: Lengths = Lengths(min=3, max=40)
    eval_lengths: Lengths = Lengths(min=40, max=256)
    """Longer than training: the test measures length extrapolation."""
    eval_samples: int = Field(1024, ge=1)
    seed: int = 0
    """Seed of the evaluation set, fixed across training seeds so runs are compared on the same samples."""


class MQARData(Schema):
    """Multi-query associative recall: key-value pairs, then queries whose answers are the values."""

    kind: Literal["mqar"] = "mqar"
    vocab_size: int = Field(8192, ge=8)
    context_length: int = Field(64, ge=4)
    num_kv_pairs: int = Field(4, ge=1)
    eval_context_length: int | None = Field(None, ge=4)
    """None evaluates at the training length."""
    eval_samples: int = Field(1024, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _fits(self) -> MQARData:
        errors = FieldErrors()
        for name in ("context_length", "eval_context_length"):
            length = getattr(self, name)
            if length is not None and length < 4 * self.num_kv_pairs:
                errors.add((name,), f"expected at least 4 * num_kv_pairs = {4 * self.num_kv_pairs}, got {length}")
        if self.vocab_size < 2 * self.num_kv_pairs + 2:
            errors.add(("vocab_size",), f"expected at least {2 * self.num_kv_pairs + 2} for {self.num_kv_pairs} "
                       f"distinct keys and values, got {self.vocab_size}")
        errors.raise_if_any()
        return self


class TextData(Schema):
    """Language modelling on local files, split into train and validation by position."""

    kind: Literal["text"] = "text"
    files: list[str] = Field(min_length=1)
    """Paths relative to the recipe file; `zoo-data:NAME` names a corpus shipped with the package; a name
    with `*` or `?` stands for its matches in sorted order (the shards of a corpus)."""
    format: Literal["text", "json", "parquet"] | None = None
    """None infers it from the file suffix (.txt, .jsonl/.json(.gz), .parquet)."""
    text_field: str = "text"
    tokenizer: Union[Literal["char", "byte", "gpt2"], Annotated[str, Field(pattern=r"^(local-dir|hf-hub):.+")]] = "char"
    """char: the corpus's distinct characters; byte: UTF-8 bytes; gpt2: GPT-2 BPE from a local ranks file;
    `local-dir:PATH` / `hf-hub:ORG/NAME`: a checkpoint's own tokenizer.json (a pretrained model's tokens)."""
    context_length: int = Field(128, ge=2)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    """The last fraction of the token stream is held out for validation."""
    sampling: Literal["windows", "packed"] = "windows"
    """windows: each training row starts at a random offset drawn from (seed, step). packed: the documents
    are streamed, tokenized and joined with EOS between them, the stream is cut into consecutive sequences,
    and global sample i is sequence perm_e[i mod N] of epoch e = i // N (perm_e a permutation drawn from
    (seed, e)): the order depends only on the global sample index, whatever the number of processes."""
    cache_dir: str | None = None
    """packed: keep the token stream in this folder (a .npy file named by a hash of the files and settings,
    written atomically, memory-mapped when read), so later runs and every process skip tokenization."""

    @model_validator(mode="after")
    def _eos(self) -> TextData:
        errors = FieldErrors()
        if self.sampling == "packed" and self.tokenizer in ("char", "byte"):
            errors.add(("sampling",), f"packed needs a tokenizer with an EOS token (gpt2 or a checkpoint's), "
                       f"got {self.tokenizer!r}")
        errors.raise_if_any()
        return self


class InstructionData(Schema):
    """Instruction tuning: records with a prompt and a response; the loss is on the response tokens only.

    A sample is the prompt's tokens, then the response's (then EOS where the tokenizer has one), as they are: any
    template or separator is part of the data. Records are split into train and validation by position.
    """

    kind: Literal["instructions"] = "instructions"
    files: list[str] = Field(min_length=1)
    """JSON lines or parquet files, paths relative to the recipe file (`zoo-data:NAME` as for text)."""
    format: Literal["json", "parquet"] | None = None
    """None infers it from the file suffix."""
    prompt_field: str = "prompt"
    response_field: str = "response"
    tokenizer: Union[Literal["char", "byte", "gpt2"], Annotated[str, Field(pattern=r"^(local-dir|hf-hub):.+")]] = "gpt2"
    """As for text, or a checkpoint directory's tokenizer.json (`local-dir:PATH`, `hf-hub:ORG/NAME` from the local
    cache): the base model's own tokens."""
    context_length: int = Field(2048, ge=2)
    """Samples longer than this are cut at the end (of the response); batches are padded to their longest."""
    val_fraction: float = Field(0.1, gt=0, lt=1)
    """The last fraction of the records is held out for validation."""


class DigitsSplit(Schema):
    """scikit-learn's bundled digits (1,797 8x8 images, 10 classes; read from the wheel, no network), split
    into train and test stratified by class with a fixed seed."""

    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0


class DigitsData(DigitsSplit):
    """Image classification of the digits: images (1, 8, 8) scaled to [0, 1], the test split held out."""

    kind: Literal["digits"] = "digits"
    shift: int = Field(0, ge=0, le=2)
    """Training images are shifted by up to this many pixels in each direction (zero fill); 0: none."""


class DigitsPixelsData(DigitsSplit):
    """Autoregressive generation of the digits, pixel by pixel: the 64 gray levels (0-16, 17 tokens) row by row
    after a class token (conditional) or a start token. Scored by sampling `samples` images and comparing
    their features with those of the held-out test images (torch-fidelity's KID and precision/recall)."""

    kind: Literal["digits-pixels"] = "digits-pixels"
    conditional: bool = True
    samples: int = Field(360, ge=2)
    """Images sampled for scoring (class-balanced when conditional)."""
    temperature: float = Field(1.0, gt=0)
    feature_extractor: str = "vil-digits"
    """The image classifier whose penultimate features the scores compare: a zoo entry (its default weights)
    or `local-dir:PATH`. Its features are registered as torch-fidelity's feature extractor."""
    kid_subset_size: int = Field(100, ge=2)
    prc_neighborhood: int = Field(3, ge=1)
    seed: int = 0
    """Seed of the sampling."""


SERIES = ("statsmodels:co2",)


class SeriesData(Schema):
    """Forecasting one bundled univariate series: train on windows of its past, score the last `test_length`
    steps forecast from everything before them (MASE, quantile losses, and the seasonal-naive baseline's)."""

    kind: Literal["series"] = "series"
    series: Literal[SERIES]
    """statsmodels:co2: weekly Mauna Loa CO2, 1958-2001, 2,284 weeks, 59 missing (needs the `timeseries` extra)."""
    test_length: int = Field(104, ge=1)
    """Held-out steps at the end: the forecast horizon that is scored and trained for."""
    season_length: int = Field(52, ge=1)
    """Period of the seasonal-naive forecast and of MASE's in-sample scale."""
    context_length: int = Field(512, ge=1)
    """Steps of history in each training window (the model may use fewer: its own context_length)."""
    min_context: int = Field(64, ge=1)
    """Training windows end no earlier than this many steps into the series."""

    @model_validator(mode="after")
    def _fits(self) -> SeriesData:
        errors = FieldErrors()
        if self.min_context > self.context_length:
            errors.add(("min_context",), f"expected at most context_length ({self.context_length}), got {self.min_context}")
        errors.raise_if_any()
        return self


DataConfig = Annotated[Union[FormalLanguageData, MQARData, TextData, InstructionData, DigitsData, DigitsPixelsData,
                             SeriesData],
                       Field(discriminator="kind")]


LORA_TARGETS = {
    "xlstm-lm": ["xlstm.proj_up", "xlstm.proj_down"],
    "xlstm-large-lm": ["mlstm_layer.q", "mlstm_layer.k", "mlstm_layer.v", "mlstm_layer.ogate_preact",
                       "mlstm_layer.out_proj"],
}
"""Default LoRA targets per model family: the mLSTM layers' projections. NeurIPS xLSTM: the up and down
projections of the mLSTM layers (its q/k/v are block-diagonal, not nn.Linear; sLSTM layers have none).
xLSTM Large: q, k, v, the output gate and out_proj (not the scalar per-head i/f gates, nor the FFN)."""


class LoRA(Schema):
    """Low-rank adapters (through peft) on nn.Linear modules of a frozen base: W x + (alpha / rank) B A x."""

    kind: Literal["lora"] = "lora"
    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the adapter's input."""
    target_modules: list[str] | None = Field(None, min_length=1)
    """Module names or fnmatch patterns, matched against the full name and its dotted suffixes (`mlstm_layer.q`
    matches `backbone.blocks.3.mlstm_layer.q`); each must match an nn.Linear. None: the family's default,
    the mLSTM projections (xlstm-lm: xlstm.proj_up, xlstm.proj_down; xlstm-large-lm: mlstm_layer.q, .k, .v,
    .ogate_preact, .out_proj)."""
    base_dtype: Literal["float32", "bfloat16"] = "float32"
    """dtype of the frozen base weights; the adapter's weights stay float32."""


class Optimizer(Schema):
    kind: Literal["adamw"] = "adamw"
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    """Applied to the parameter groups the model's weight-decay rules select."""


class Schedule(Schema):
    """Linear warm-up to the peak lr, then cosine decay to a floor."""

    warmup_steps: int = Field(0, ge=0)
    decay_steps: int | None = Field(None, ge=1)
    """Steps from the start to the end of the decay; None means train.max_steps."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """The floor, as a fraction of the peak lr."""


class Train(Schema):
    max_steps: int = Field(ge=0)
    """0 trains nothing: the recipe only evaluates (the entry's weights when model.pretrained is set)."""
    batch_size: int = Field(ge=1)
    """Global batch: split evenly over the processes of a distributed run."""
    seed: int = 0
    """Seeds the init and the training stream."""
    checkpoint_every: int = Field(0, ge=0)
    """0 writes a checkpoint only at the end."""
    log_every: int = Field(10, ge=1)
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 runs the forward under autocast with fp32 weights (under fsdp: bf16 compute copies of the
    weights, fp32 gradient reduction)."""
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    """auto: DDP when torchrun starts several processes, else one plain process; ddp; fsdp: FSDP2
    (`fully_shard` per block, then the root). Not part of what a run computes: --resume may change it."""
    grad_accum_steps: int = Field(1, ge=1)
    """Micro-batches per optimizer step: each process runs batch_size / (processes x grad_accum_steps) rows
    at a time; the step is the same as with the whole batch at once."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of storing them (less memory)."""
    compile: bool = False
    """torch.compile the model (per block under fsdp)."""


class EarlyStop(Schema):
    metric: str = "accuracy"
    threshold: float
    mode: Literal["max", "min"] = "max"
    """max stops once the metric reaches the threshold, min once it falls to it."""


class Eval(Schema):
    every: int = Field(0, ge=0)
    """Evaluate every this many steps (0: only at the end)."""
    batch_size: int = Field(128, ge=1)
    max_batches: int | None = Field(None, ge=1)
    """Cap on validation batches (None: the whole validation set)."""
    early_stop: EarlyStop | None = None


class Recipe(Schema):
    """How one model is trained and evaluated. Zoo entries point at recipes; results name the recipe role."""

    schema_version: Literal[1] = 1
    description: str = ""
    model: ModelRef
    data: DataConfig
    optimizer: Optimizer
    schedule: Schedule = Schedule()
    train: Train
    eval: Eval = Eval()
    adapter: LoRA | None = None
    """Fine-tune adapters on a frozen base instead of all weights; the base must have weights
    (`model.pretrained` or a `local-dir:` checkpoint)."""

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        errors = FieldErrors()
        if self.eval.early_stop and self.eval.every == 0:
            errors.add(("eval", "every"), "expected a positive interval for eval.early_stop, got 0")
        decay = self.schedule.decay_steps or self.train.max_steps
        if self.train.max_steps and self.schedule.warmup_steps > decay:
            errors.add(("schedule", "warmup_steps"), f"expected at most the decay steps ({decay}), "
                       f"got {self.schedule.warmup_steps}")
        if self.adapter and not (self.model.pretrained or self.model.name.startswith("local-dir:")):
            errors.add(("adapter",), "expected a base with weights (model.pretrained, or model.name "
                       f"'local-dir:PATH'), got the fresh init of {self.model.name!r}")
        if self.train.batch_size % self.train.grad_accum_steps:
            errors.add(("train", "grad_accum_steps"), f"expected a divisor of train.batch_size "
                       f"({self.train.batch_size}), got {self.train.grad_accum_steps}")
        errors.raise_if_any()
        return self
