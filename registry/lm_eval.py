"""The lm-evaluation-harness model `xlstm-zoo`: any zoo model or checkpoint, scored through its recurrence.

Importing this module registers it, so `lm_eval.simple_evaluate(model="xlstm-zoo", model_args="pretrained=SPEC,
tokenizer=...,dtype=...,device=...", tasks=[...])` works; `python -m xlstm_zoo.registry.lm_eval ARGS` is lm-eval's
own command line with the model registered (lm-eval 0.4 finds no plugins by itself); `xlstm-zoo lm-eval SPEC
--tasks ...` (`main`) runs tasks, the ones shipped in zoo/lm_eval included. Scoring is in scoring.py:
shared contexts run once, documents in one stateful pass (no rolling windows: a recurrent model needs none).
Nothing is downloaded: tasks read local files or the Hugging Face datasets cache.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import time
from importlib import resources
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # read before `datasets` is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    import lm_eval.models  # noqa: F401  (built-in models stay reachable once a third party registers one)
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
except ImportError as e:
    raise ImportError(f"lm-eval is not installed ({e}): pip install 'xlstm-zoo[eval]'") from e

import torch
from tqdm import tqdm

from ..schemas.kernels import DTYPES
from .builder import build_for_eval
from .factory import parse_dtype
from .data.tokenizer_specs import check_vocabulary, load_tokenizer
from .scoring import prefix_token, score_continuations, score_documents

ZOO_TASKS = Path(str(resources.files("xlstm_zoo.zoo") / "lm_eval"))
"""Local tasks shipped with the zoo (always on the task path of `xlstm-zoo lm-eval`)."""
DEFAULT_BATCH_SIZE = 32


@register_model("xlstm-zoo")
class XLSTMZooLM(TemplateLM):
    """pretrained: anything build_model takes (zoo name, YAML file, local-dir:, hf-hub:) or a built model.
    tokenizer: byte, gpt2, char:FILE, a tokenizer directory or hf-hub:ORG/NAME; by default the checkpoint's
    tokenizer.json. The config's bos_token_id, when set, starts every sequence. chunk_size: positions per
    forward call when scoring whole documents. Tokens and seconds spent are counted in `stats`."""

    def __init__(self, pretrained, tokenizer: str | None = None, dtype=None, device: str | None = None,
                 batch_size=None, max_batch_size: int | None = None, chunk_size: int = 1024,
                 max_gen_toks: int = 256):
        super().__init__()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, directory = build_for_eval(pretrained, device=device, dtype=parse_dtype(dtype))
        self.config = self.model.config
        self.tokenizer = load_tokenizer(tokenizer, directory)
        check_vocabulary(self.tokenizer, self.config.vocab_size, tokenizer or directory)
        self.batch_size = _batch_size(batch_size, max_batch_size)
        self.chunk_size = int(chunk_size)
        self.max_gen_toks = int(max_gen_toks)
        self.stats = {"tokens": 0, "seconds": 0.0}

    @property
    def eot_token_id(self):
        eos = self.tokenizer.eos_id
        return self.config.eos_token_id if eos is None else eos

    @property
    def prefix_token_id(self) -> int:
        """What a document's first token is conditioned on (scoring.prefix_token)."""
        token = prefix_token(self.config, self.tokenizer)
        if token is None:
            raise ValueError("the model has no bos_token_id or eos_token_id (config or tokenizer) to condition a "
                             "document's first token on: set model.bos_token_id")
        return token

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        bos = [] if add_special_tokens is False or self.config.bos_token_id is None else [self.config.bos_token_id]
        return bos + self.tokenizer.encode(string)

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    def _timed(self, tokens: int):
        return _Timer(self.stats, tokens)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        pairs = [(context, continuation) for _, context, continuation in requests]
        with self._timed(sum(len(c) + len(t) for c, t in pairs)):
            scores = score_continuations(self.model, pairs, self.batch_size)
        for (key, _, _), score in zip(requests, scores):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, score)
        return scores

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        documents = [[self.prefix_token_id, *self.tokenizer.encode(req.args[0])] for req in requests]
        with self._timed(sum(len(d) for d in documents)):
            scores = score_documents(self.model, documents, self.batch_size, self.chunk_size)
        for req, score in zip(requests, scores):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), score)
        return scores

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled) continuations, cut at the first `until` string; batches are left-padded with
        an attention mask, which our generate honours exactly (pads never enter the state)."""
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        out: list[str | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="generate_until")
        for indices in groups.values():
            kwargs = dict(requests[indices[0]].args[1])
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            sampling = _sampling(kwargs)
            prompts = {i: self.tok_encode(requests[i].args[0]) for i in indices}
            order = sorted(indices, key=lambda i: -len(prompts[i]))
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                texts = self._generate([prompts[i] for i in batch], max_new, sampling)
                for i, text in zip(batch, texts):
                    for stop in until:
                        text = text.split(stop)[0]
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(batch))
        bar.close()
        return out

    def _generate(self, prompts: list[list[int]], max_new: int, sampling: dict) -> list[str]:
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        pad = self.config.pad_token_id or 0
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        eos = self.eot_token_id
        with self._timed(sum(len(p) for p in prompts)) as timer:
            generated = self.model.generate(ids.to(device), max_new, attention_mask=mask.to(device),
                                            eos_token_id=eos, **sampling)[:, width:].tolist()
            timer.tokens += sum(map(len, generated))
        texts = []
        for row in generated:
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            texts.append(self.tok_decode(row))
        return texts

    def throughput(self) -> str:
        s = self.stats
        return f"{s['tokens']:,} tokens in {s['seconds']:.2f} s: {s['tokens'] / max(s['seconds'], 1e-9):,.0f} tokens/s"


class _Timer:
    """Adds the tokens and the wall time of a block to `stats`."""

    def __init__(self, stats: dict, tokens: int):
        self.stats, self.tokens = stats, tokens

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.stats["tokens"] += self.tokens
        self.stats["seconds"] += time.perf_counter() - self.start


def _batch_size(batch_size, max_batch_size) -> int:
    """lm-eval passes an int, a numeric string or 'auto' ('auto' = max_batch_size, else the default)."""
    if batch_size is None or str(batch_size).startswith("auto"):
        return int(max_batch_size or DEFAULT_BATCH_SIZE)
    size = int(batch_size)
    if size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {size}")
    return size


def _sampling(kwargs: dict) -> dict:
    """lm-eval's generation keywords as our generate's (temperature 0 or do_sample False: greedy)."""
    temperature = float(kwargs.get("temperature", 0.0) or 0.0)
    if not kwargs.get("do_sample", False) or temperature == 0.0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_k": kwargs.get("top_k"), "top_p": kwargs.get("top_p")}


# ------------------------------------------------------------------------------------------------ running tasks


def task_manager(tasks: list[str], include_path=()):
    """A task manager over the zoo's tasks and `include_path`, and over lm-eval's ~15k built-in tasks only when
    a name is not found locally (indexing those takes seconds)."""
    import logging

    from lm_eval.tasks import TaskManager

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)
    paths = [str(ZOO_TASKS), *map(str, include_path)]
    local = TaskManager(include_path=paths, include_defaults=False)
    if all(name in local.all_tasks for name in tasks):
        return local
    return TaskManager(include_path=paths)


def check_tasks(manager, tasks: list[str]) -> None:
    """Unknown names (with close matches) and tasks whose data cannot be read fail here, one line each,
    before any model work."""
    from lm_eval.tasks import get_task_dict

    known = manager.all_tasks
    for name in tasks:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else " (see `lm-eval ls tasks`; local tasks: --include-path DIR)"
            raise LookupError(f"lm-eval task {name!r} not found{hint}")
        try:
            get_task_dict([name], manager)
        except Exception as e:  # noqa: BLE001 - any failure here is the task's data: say which task
            raise FileNotFoundError(f"{_dataset_of(manager, name)} could not be loaded (offline: local files "
                                    f"and the Hugging Face cache {_datasets_cache()}): "
                                    f"{type(e).__name__}: {e}".splitlines()[0]) from e


def _dataset_of(manager, name: str) -> str:
    """`lm-eval task NAME (FILE): dataset PATH [data_files]`, from the task's YAML as indexed."""
    entry = manager.task_index.get(name)
    cfg = (entry.cfg if entry is not None else None) or {}
    where = f" ({entry.yaml_path})" if entry is not None and entry.yaml_path else ""
    dataset = " ".join(str(cfg[k]) for k in ("dataset_path", "dataset_name") if cfg.get(k)) or "its dataset"
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    return f"lm-eval task {name!r}{where}: dataset {dataset}" + (f" {files}" if files else "")


def _datasets_cache() -> str:
    import datasets

    return str(datasets.config.HF_DATASETS_CACHE)


def run_tasks(lm, tasks: list[str], *, include_path=(), num_fewshot: int | None = None, limit=None,
              log_samples: bool = False, bootstrap_iters: int = 1000, manager=None) -> dict:
    """lm-eval's results dict for `tasks` (names) on an LM instance; `manager`: a task manager whose tasks
    check_tasks already passed."""
    from lm_eval import simple_evaluate

    if manager is None:
        manager = task_manager(tasks, include_path)
        check_tasks(manager, tasks)
    return simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit, task_manager=manager,
                           log_samples=log_samples, bootstrap_iters=bootstrap_iters)


def metric_value(results: dict, task: str, metric: str) -> float | None:
    """results[task]["<metric>,<filter>"]; a bare metric name means the `none` filter."""
    key = metric if "," in metric else f"{metric},none"
    value = results["results"].get(task, {}).get(key)
    return None if value is None else float(value)


def _check_writable(path: Path, option: str) -> None:
    """`path`'s folder exists (made if need be) and takes a new file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        reason = None if os.access(path.parent, os.W_OK) else f"{path.parent} is not writable"
    except FileExistsError:
        reason = f"{path.parent} is not a directory"
    except OSError as exc:
        reason = exc.strerror
    if reason:
        raise OSError(f"{option}: cannot write {path} ({reason})")


def _count(kind, least, expected: str, strict: bool = False):
    """An argparse type: a number of `kind` at least (strict: above) `least`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value < least or strict and value == least:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


def main(argv: list[str]) -> int:
    """`xlstm-zoo lm-eval SPEC --tasks T1,T2 ...`: prints lm-eval's table and tokens/s, writes the results JSON."""
    from lm_eval.utils import handle_non_serializable, make_table

    parser = argparse.ArgumentParser(prog="xlstm-zoo lm-eval", description="lm-evaluation-harness on a zoo model")
    parser.add_argument("spec", help="zoo name, YAML file, local-dir:PATH or hf-hub:ORG/NAME")
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    parser.add_argument("--include-path", action="append", default=[], type=Path, help="folder of task YAMLs")
    parser.add_argument("--num-fewshot", type=_count(int, 0, "an integer >= 0"))
    parser.add_argument("--limit", type=_count(float, 0, "a number > 0 (a fraction if < 1)", strict=True),
                        help="documents per task (a fraction if < 1)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--device")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto")
    parser.add_argument("--tokenizer", help="byte, gpt2, char:FILE, a tokenizer directory or hf-hub:ORG/NAME")
    parser.add_argument("--output", type=Path, help="write lm-eval's results dict here as JSON")
    parser.add_argument("--log-samples", action="store_true", help="keep every request's scores in --output")
    args = parser.parse_args(argv)
    if args.output:  # before hours of evaluation, not after
        _check_writable(args.output, "--output")
    for path in args.include_path:
        if not path.is_dir():
            raise FileNotFoundError(f"--include-path: {path} is not a directory")
    tasks = [t for t in args.tasks.split(",") if t]
    manager = task_manager(tasks, args.include_path)
    check_tasks(manager, tasks)  # before the (possibly large) model is loaded
    lm = XLSTMZooLM(args.spec, tokenizer=args.tokenizer, dtype=args.dtype, device=args.device,
                    batch_size=args.batch_size)
    limit = None if args.limit is None else int(args.limit) if args.limit >= 1 else args.limit
    results = run_tasks(lm, tasks, num_fewshot=args.num_fewshot, limit=limit, manager=manager,
                        log_samples=args.log_samples)
    results["xlstm_zoo_throughput"] = {**lm.stats, "tokens_per_s": lm.stats["tokens"] / max(lm.stats["seconds"], 1e-9)}
    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
    print(f"xlstm-zoo: {lm.throughput()}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2, default=handle_non_serializable))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
