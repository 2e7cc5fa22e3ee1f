"""lm-eval speed: `xlstm-zoo lm-eval` against lm-eval's `hf` model on transformers' xLSTM, same weights, one run.

A random model of the xlstm-7b shape is built in bf16 and saved once (save_pretrained writes the layout
transformers reads; a byte-level tokenizer.json goes beside it, so both sides tokenize alike). The task is
multiple choice from the shipped Shakespeare corpus: four lines of context, the true next line among three
others, N documents (4N loglikelihood requests). Ours runs through the CLI's `main` (which loads the
directory); the hf model through lm-eval's HFLM on the same directory. Both are warmed up on 16 documents first
(Triton compiles, cuBLAS picks kernels), ours on the in-memory model before it is saved.

tokens/s = tokens of all requests (context + continuation, as a full re-computation counts them) / seconds
inside the model's loglikelihood calls (loading and task building excluded on both sides).

    python benchmarks/lm_eval_speed.py --out DIR [--docs 1000] [--batch-size 32]
    python benchmarks/lm_eval_speed.py --out /tmp/x --tiny --device cpu --docs 20    # smoke test
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.registry.checkpoints import save_pretrained
from xlstm_zoo.registry.data.files import resolve
from xlstm_zoo.registry.data.tokenizers import save_byte_tokenizer
from xlstm_zoo.registry.lm_eval import XLSTMZooLM, main as lm_eval_main, run_tasks

TASK = "bench_next_line"
NO_BOS = {"model.bos_token_id": None}
"""The byte tokenizer has no BOS and lm-eval's hf model adds none: neither side starts with one, so both score
the same tokens (the contexts are never empty)."""
TINY = {**NO_BOS, "model.embedding_dim": 128, "model.num_heads": 2, "model.num_blocks": 2, "model.weight_mode": "single"}


def write_task(root: Path, docs: int, seed: int = 0) -> None:
    """N documents: 4 consecutive lines of a play or sonnet, the true next line among 3 random other lines."""
    rows = [json.loads(line) for line in gzip.open(resolve("zoo-data:shakespeare.jsonl.gz"), "rt")]
    lines = [line.strip() for row in rows for line in row["text"].split("\n") if len(line.strip()) > 10]
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(np.arange(4, len(lines)), docs, replace=False).tolist():
        options = [lines[i], *(lines[j] for j in rng.choice(len(lines), 3, replace=False))]
        order = rng.permutation(4).tolist()
        out.append({"context": "\n".join(lines[i - 4:i]) + "\n", "choices": [options[j] for j in order],
                    "label": order.index(0)})
    data = root / f"{TASK}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in out))
    (root / f"{TASK}.yaml").write_text(
        f"task: {TASK}\ndataset_path: json\ndataset_kwargs: {{data_files: {{test: '{data}'}}}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{context}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: label\ntarget_delimiter: ''\n"
        "metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}, "
        "{metric: acc_norm, aggregation: mean, higher_is_better: true}]\nmetadata: {version: 1.0}\n")


def manager(tasks: Path):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(tasks), include_defaults=False)


def timed_hf(lm) -> dict:
    """Counts tokens and seconds of HFLM's loglikelihood calls, as XLSTMZooLM.stats does for ours."""
    stats = {"tokens": 0, "seconds": 0.0}
    inner = lm._loglikelihood_tokens

    def wrapper(requests, **kwargs):
        start = time.perf_counter()
        out = inner(requests, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        stats["seconds"] += time.perf_counter() - start
        stats["tokens"] += sum(len(c) + len(t) for _, c, t in requests)
        return out

    lm._loglikelihood_tokens = wrapper
    return stats


def scores(results: dict) -> np.ndarray:
    return np.array([[r[0][0] for r in s["resps"]] for s in sorted(results["samples"][TASK], key=lambda s: s["doc_id"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a small model (smoke test)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path("/dev/shm" if Path("/dev/shm").is_dir() else args.out) / "lm_eval_speed"
    tasks, directory = work / "tasks", work / "model"
    tasks.mkdir(parents=True, exist_ok=True)
    write_task(tasks, args.docs)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    dtype_name = str(dtype).removeprefix("torch.")

    torch.manual_seed(0)
    model = build_model("xlstm-7b", overrides=TINY if args.tiny else NO_BOS, device=args.device, dtype=dtype)
    warm = XLSTMZooLM(model, tokenizer="byte", batch_size=args.batch_size)
    run_tasks(warm, [TASK], limit=16, manager=manager(tasks), bootstrap_iters=0)
    save_pretrained(model, directory)
    save_byte_tokenizer(directory)
    del model, warm
    torch.cuda.empty_cache() if torch.cuda.is_available() else None

    ours_file = args.out / "ours.json"
    lm_eval_main([f"local-dir:{directory}", "--tasks", TASK, "--include-path", str(tasks), "--dtype", dtype_name,
                  "--device", args.device, "--batch-size", str(args.batch_size), "--output", str(ours_file),
                  "--log-samples"])
    ours = json.loads(ours_file.read_text())
    torch.cuda.empty_cache() if torch.cuda.is_available() else None

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    hf = HFLM(pretrained=str(directory), dtype=dtype_name, batch_size=args.batch_size, device=args.device)
    stats = timed_hf(hf)
    simple_evaluate(model=hf, tasks=[TASK], limit=16, task_manager=manager(tasks), bootstrap_iters=0)
    stats.update(tokens=0, seconds=0.0)
    theirs = simple_evaluate(model=hf, tasks=[TASK], task_manager=manager(tasks), bootstrap_iters=0, log_samples=True)

    a, b = scores(ours), scores(theirs)
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-9)
    ours_tps = ours["xlstm_zoo_throughput"]["tokens_per_s"]
    hf_tps = stats["tokens"] / stats["seconds"]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    import lm_eval
    import transformers

    now = datetime.now(timezone.utc)
    lines = [
        "## lm-eval speed: `xlstm-zoo lm-eval` vs lm-eval's `hf` model on transformers' xLSTM",
        "",
        f"GPU: {gpu}, date {now:%Y-%m-%d %H:%M} UTC, python {platform.python_version()}, torch {torch.__version__}, "
        f"lm-eval {lm_eval.__version__}, transformers {transformers.__version__}",
        "",
        f"Model: random xlstm-7b shape{' (tiny override)' if args.tiny else ''} without BOS, {dtype_name}, the same saved "
        f"directory for both; byte-level tokenizer. Task: {args.docs} multiple-choice documents x 4 choices "
        f"({4 * args.docs} loglikelihood requests; 4 lines of context, one line per choice), batch size "
        f"{args.batch_size}. Both warmed up on 16 documents first. tokens/s = tokens of all requests (context + "
        "continuation) / seconds inside the loglikelihood calls.",
        "",
        "| implementation | tokens | seconds | tokens/s | acc | acc_norm |",
        "|---|---|---|---|---|---|",
        f"| xlstm-zoo lm-eval (shared contexts, Triton kernels) | {ours['xlstm_zoo_throughput']['tokens']:,} | "
        f"{ours['xlstm_zoo_throughput']['seconds']:.2f} | {ours_tps:,.0f} | {ours['results'][TASK]['acc,none']:.4f} | "
        f"{ours['results'][TASK]['acc_norm,none']:.4f} |",
        f"| lm-eval hf, transformers xLSTM | {stats['tokens']:,} | {stats['seconds']:.2f} | {hf_tps:,.0f} | "
        f"{theirs['results'][TASK]['acc,none']:.4f} | {theirs['results'][TASK]['acc_norm,none']:.4f} |",
        "",
        f"Speed-up: **{ours_tps / hf_tps:.2f}x** (goal >= 5x).",
        "",
        f"Agreement of the {a.size} log-likelihoods ({dtype_name}): median relative difference {np.median(rel):.2e}, "
        f"max {rel.max():.2e}; same chosen answer in {(a.argmax(1) == b.argmax(1)).mean():.1%} of documents.",
    ]
    report = "\n".join(lines) + "\n"
    name = f"lm_eval-{now:%Y%m%d-%H%M}-{gpu.replace(' ', '-')}.md"
    (args.out / name).write_text(report)
    print(report)
    print(f"wrote {args.out / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
