"""`xlstm-zoo bench <what>`: GPU benchmarks of the zoo against its peers, each a sub-benchmark.

    xlstm-zoo bench kernels [--only check,gates,chunkwise,step,slstm] [--quick] [--out benchmarks/results]
    xlstm-zoo bench generate [--batches 1,8,...] [--quantize int8-weight-only,...] [--compile ...] [--zoo-quantize ...]
    xlstm-zoo bench prefill [--lengths 8192,...] [--skip-variants]
    xlstm-zoo bench lora [--steps 5]
    xlstm-zoo bench train [--entries xlstm-125m,xlstm-350m] [--variants plain,fsdp+compile,...] [--no-peers]

Kernels (kernels.py) and whole models (models.py) are timed beside the peers that are installed, in one
run; the tables are printed and written, with the GPU and software versions, to a markdown file under --out.
"""

from __future__ import annotations

import argparse

from .report import Report, _versions, _write


def models(args) -> int:
    """generate / prefill / train (models.py), lora (lora.py)."""
    import torch

    from . import models as bench_models
    if not torch.cuda.is_available():
        print(f"bench {args.what} needs a CUDA GPU")
        return 2
    rep = Report()
    rep.add(f"## xlstm-zoo bench {args.what}\n\n{_versions()}")
    if args.what == "generate":
        if not args.skip_variants:
            bench_models.bench_generate(rep, args.new_tokens)
        bench_models.bench_batches(rep, [int(b) for b in args.batches.split(",") if b])
        _write(rep, args.what, args.out)  # what is measured so far, should a variant below take the GPU down
        bench_models.bench_quantized(rep, *([m for m in getattr(args, a).split(",") if m]
                                            for a in ("quantize", "compile", "zoo_quantize")),
                                     batches=[int(b) for b in args.quantized_batches.split(",") if b])
    elif args.what == "prefill":
        bench_models.bench_prefill(rep, [int(s) for s in args.lengths.split(",")], not args.skip_variants)
    elif args.what == "lora":
        from .lora import bench_lora
        bench_lora(rep, args.steps)
    elif not bench_models.bench_train(rep, args.entries.split(","), args.variants.split(","), args.peers,
                                      args.steps, args.batch, args.seq, args.jsonl).main:
        return 0
    _write(rep, args.what, args.out)
    return 0


def _kernels(args) -> int:
    from .kernels import kernels
    return kernels(args)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xlstm-zoo bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    k = sub.add_parser("kernels", help="mLSTM/sLSTM kernels against their peers (GPU)")
    k.add_argument("--only", default="check,gates,chunkwise,step,slstm")
    k.add_argument("--quick", action="store_true", help="one sequence length per table")
    k.add_argument("--out", default="benchmarks/results")
    k.set_defaults(run=_kernels)
    for what, text in (("generate", "xLSTM-7B greedy decode, CUDA graph vs eager vs peer (GPU)"),
                       ("prefill", "xLSTM-7B prefill 1x2048 / 1x8192, and long prompts up to 1x1048576 (GPU)"),
                       ("train", "training tokens/s and memory of zoo entries per pipeline variant; torchrun"),
                       ("lora", "xLSTM-7B LoRA fine-tuning steps/s and peak memory, batch 4 x 2048 (GPU)")):
        p = sub.add_parser(what, help=text)
        p.add_argument("--out", default="benchmarks/results")
        if what in ("generate", "prefill"):
            p.add_argument("--skip-variants", action="store_true", help="skip the weight-layout / pointwise table")
        if what == "prefill":
            p.add_argument("--lengths", default="8192,32768,131072,262144,524288,1048576", help="long-prompt lengths")
        if what == "generate":
            p.add_argument("--new-tokens", type=int, default=128)
            p.add_argument("--batches", default="1,8,32,64,128,256", help="batch sizes of the serving table")
            p.add_argument("--quantize", default="int8-weight-only,int4-weight-only,float8-weight-only",
                           help="weight-only methods decoded beside bf16 (torchao)")
            p.add_argument("--compile", default="", help="methods also run with torch.compile'd projections "
                           "(e.g. int8-weight-only,float8-weight-only)")
            p.add_argument("--zoo-quantize", default="int8-weight-only,int4-weight-only",
                           help="methods also run with the zoo's layers (quantize_backend='zoo', Triton matvec)")
            p.add_argument("--quantized-batches", default="8,16",
                           help="batch sizes also decoded by every weight-only variant (beside B=1)")
        if what == "train":
            from .models import TRAIN_VARIANTS
            p.add_argument("--entries", default="xlstm-125m,xlstm-350m", help="zoo entries, comma-separated")
            p.add_argument("--variants", default="plain,ddp,fsdp,plain+compile,fsdp+compile,plain+ac",
                           help=f"strategy[+compile][+ac], comma-separated, of: {', '.join(TRAIN_VARIANTS)}")
            p.add_argument("--no-peers", dest="peers", action="store_false", help="skip transformers' Llama")
            p.add_argument("--steps", type=int, default=5, help="timed steps (after 1 + 2 warm-up steps)")
            p.add_argument("--batch", type=int, default=16, help="rows per GPU")
            p.add_argument("--seq", type=int, default=2048)
            p.add_argument("--jsonl", default=None, help="also append each row here as it is measured")
        if what == "lora":
            p.add_argument("--steps", type=int, default=5)
        p.set_defaults(run=models)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    import sys
    raise SystemExit(main(sys.argv[1:]))
