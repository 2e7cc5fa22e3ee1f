"""lm-evaluation-harness on our models: every number lm-eval reports equals the one computed directly from the
model's logits (float32: 1e-5 relative, summation order only), shared-context scoring equals re-running each
context + continuation, and lm-eval's own `hf` model on transformers' xLSTM gives the same numbers as ours
(1e-4 relative: two implementations of the same float32 math, as in test_interop_hf)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from lm_eval import simple_evaluate

from xlstm_zoo.registry.builder import build_model
from xlstm_zoo.registry.checkpoints import save_pretrained
from xlstm_zoo.registry.cli import main as cli_main
from xlstm_zoo.registry.data.tokenizers import ByteTokenizer, make_tokenizer, save_byte_tokenizer
from xlstm_zoo.registry.lm_eval import XLSTMZooLM
from xlstm_zoo.registry.scoring import score_continuations, score_documents

BOS, EOS = 256, 257
BYTES = ByteTokenizer()
LINES = ["the cat sat on the mat", "a dog ran in the park", "we sing of arms and men", "to be or not to be",
         "all the world's a stage", "now is the winter of", "shall I compare thee", "friends, romans, countrymen"]
TASKS = ["t_mc", "t_ll", "t_roll", "t_gen"]


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small random xLSTM[1:0] with a BOS and an EOS token, saved as a checkpoint directory."""
    torch.manual_seed(0)
    model = build_model("xlstm-shakespeare-byte", overrides={"model.vocab_size": 258, "model.bos_token_id": BOS,
                                                             "model.eos_token_id": EOS})
    directory = tmp_path_factory.mktemp("lm") / "model"
    save_pretrained(model, directory)
    return directory


def _write_tasks(root) -> None:
    """One local task per lm-eval request type, on absolute-path jsonl files."""
    docs = {
        "mc": [{"q": LINES[i], "choices": [LINES[(i + k) % 8][:12] for k in (1, 2, 3, 4)], "label": i % 4}
               for i in range(6)],
        "ll": [{"ctx": LINES[i][:9], "cont": LINES[i][9:]} for i in range(5)] + [{"ctx": "", "cont": "empty context"}],
        "roll": [{"text": "\n".join(LINES[i:i + 3])} for i in range(0, 8, 2)],
        "gen": [{"prompt": LINES[i][: 3 + 2 * i], "answer": "x"} for i in range(5)],
    }
    for name, rows in docs.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = "dataset_path: json\ntest_split: train\nmetadata: {version: 1.0}\n"
    yaml = {
        "mc": "output_type: multiple_choice\ndoc_to_text: '{{q}}:'\ndoc_to_choice: '{{choices}}'\n"
              "doc_to_target: label\nmetric_list: [{metric: acc}, {metric: acc_norm}]\n",
        "ll": "output_type: loglikelihood\ndoc_to_text: '{{ctx}}'\ndoc_to_target: '{{cont}}'\ntarget_delimiter: ''\n"
              "metric_list: [{metric: perplexity}, {metric: acc}]\n",
        "roll": "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
                "metric_list: [{metric: word_perplexity}, {metric: byte_perplexity}, {metric: bits_per_byte}]\n",
        "gen": "output_type: generate_until\ndoc_to_text: '{{prompt}}'\ndoc_to_target: '{{answer}}'\n"
               "generation_kwargs: {until: ['\\n', 'e'], max_gen_toks: 7, do_sample: false}\n"
               "metric_list: [{metric: exact_match}]\n",
    }
    for name, body in yaml.items():
        data = root / f"{name}.jsonl"
        (root / f"t_{name}.yaml").write_text(f"task: t_{name}\ndataset_kwargs: {{data_files: {{train: '{data}'}}}}\n"
                                             + common + body)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    _write_tasks(root)
    return root


def _logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1, from one plain forward over the whole sequence."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def _direct_continuation(model, context: str, continuation: str) -> float:
    """As lm-eval splits a request: the context's trailing spaces belong to the continuation."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    ctx = [BOS] + BYTES.encode(context) if context else [BOS]
    return _logprobs(model, ctx + BYTES.encode(continuation))[len(ctx) - 1:].double().sum().item()


def _direct_greedy(model, prompt: str, steps: int, until: list[str]) -> str:
    ids = [BOS] + BYTES.encode(prompt)
    new = []
    with torch.no_grad():
        for _ in range(steps):
            token = model(torch.tensor([ids + new])).logits[0, -1].argmax().item()
            if token == EOS:
                break
            new.append(token)
    text = BYTES.decode(new)
    for stop in until:
        text = text.split(stop)[0]
    return text


def _scores(sample: dict) -> list[float]:
    """The log-likelihood of each request of a logged sample (resps: [[(ll, greedy)]] or [[ll]] per request)."""
    return [r[0][0] if isinstance(r[0], (list, tuple)) else r[0] for r in sample["resps"]]


def _check_against_logits(model, results: dict) -> None:
    """Every sample's score and every aggregate metric, recomputed from plain forwards."""
    samples = results["samples"]
    correct, correct_norm = [], []
    for s in samples["t_mc"]:
        doc = s["doc"]
        scores = [_direct_continuation(model, doc["q"] + ":", " " + c) for c in doc["choices"]]
        assert all(rel(got, want) < 1e-5 for got, want in zip(_scores(s), scores))
        correct.append(max(range(4), key=lambda i: scores[i]) == doc["label"])
        correct_norm.append(max(range(4), key=lambda i: scores[i] / len(doc["choices"][i])) == doc["label"])
    assert results["results"]["t_mc"]["acc,none"] == pytest.approx(sum(correct) / len(correct), abs=1e-12)
    assert results["results"]["t_mc"]["acc_norm,none"] == pytest.approx(sum(correct_norm) / len(correct), abs=1e-12)

    lls = []
    for s in samples["t_ll"]:
        want = _direct_continuation(model, s["doc"]["ctx"], s["doc"]["cont"])
        assert rel(_scores(s)[0], want) < 1e-5
        lls.append(want)
    assert rel(results["results"]["t_ll"]["perplexity,none"], math.exp(-sum(lls) / len(lls))) < 1e-5

    total, words, nbytes = 0.0, 0, 0
    for s in samples["t_roll"]:
        text = s["doc"]["text"]
        want = _logprobs(model, [BOS] + BYTES.encode(text)).double().sum().item()
        assert rel(_scores(s)[0], want) < 1e-5
        total, words, nbytes = total + want, words + len(re.split(r"\s+", text)), nbytes + len(text.encode())
    roll = results["results"]["t_roll"]
    assert rel(roll["word_perplexity,none"], math.exp(-total / words)) < 1e-5
    assert rel(roll["bits_per_byte,none"], -total / nbytes / math.log(2)) < 1e-5

    for s in samples["t_gen"]:
        assert s["resps"][0][0] == _direct_greedy(model, s["doc"]["prompt"], 7, ["\n", "e"])


def test_simple_evaluate_and_cli_equal_the_logits(model_dir, task_dir, tmp_path):
    from lm_eval.tasks import TaskManager

    results = simple_evaluate(model="xlstm-zoo", model_args=f"pretrained=local-dir:{model_dir},tokenizer=byte,"
                              "dtype=float32,device=cpu", tasks=TASKS, batch_size=3, bootstrap_iters=0,
                              task_manager=TaskManager(include_path=str(task_dir), include_defaults=False))
    model = build_model(f"local-dir:{model_dir}").eval()
    _check_against_logits(model, results)

    out = tmp_path / "results.json"
    assert cli_main(["lm-eval", f"local-dir:{model_dir}", "--tasks", ",".join(TASKS), "--include-path",
                     str(task_dir), "--tokenizer", "byte", "--device", "cpu", "--batch-size", "2", "--output",
                     str(out)]) == 0
    written = json.loads(out.read_text())["results"]
    for task in TASKS:
        for key, value in results["results"][task].items():
            if key.endswith(",none") and isinstance(value, float):
                assert rel(written[task][key], value) < 1e-5, (task, key)


def test_shared_context_scoring_equals_full_recomputation():
    """Contexts of mixed lengths (some shared by several continuations, batches cut mid-group) and documents
    scored in chunks of 5 with rows finishing at different chunks: all equal the plain forward."""
    torch.manual_seed(1)
    model = build_model("xlstm-shakespeare-byte", overrides={"model.num_blocks": 1}).eval()
    gen = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(0, 256, (n,), generator=gen).tolist()

    contexts = [ids(n) for n in (1, 4, 4, 7, 9, 9, 9)]
    requests = [(c, ids(k)) for c in contexts for k in (1, 3, 6)]
    scores = score_continuations(model, requests, batch_size=4)
    for (context, continuation), (score, greedy) in zip(requests, scores):
        logprobs = _logprobs(model, context + continuation)[len(context) - 1:]
        assert rel(score, logprobs.double().sum().item()) < 1e-5
        with torch.no_grad():
            logits = model(torch.tensor([context + continuation[:-1]])).logits[0, len(context) - 1:]
        assert greedy == bool((logits.argmax(-1) == torch.tensor(continuation)).all())

    documents = [ids(n) for n in (2, 17, 5, 30, 11)]
    for doc, score in zip(documents, score_documents(model, documents, batch_size=3, chunk=5)):
        assert rel(score, _logprobs(model, doc).double().sum().item()) < 1e-5


def test_hf_model_and_ours_agree_on_transformers_xlstm(tmp_path, task_dir):
    """A random transformers xLSTM, loaded and re-saved by us (our save_pretrained output) with a byte-level
    tokenizer.json: lm-eval's `hf` model and `xlstm-zoo` (tokenizer found in the directory) give the same
    scores. The hf model runs with batch size 1: transformers' xLSTM feeds left padding into its state."""
    from transformers import xLSTMConfig, xLSTMForCausalLM

    torch.manual_seed(0)
    hf = xLSTMForCausalLM(xLSTMConfig(vocab_size=257, hidden_size=128, num_heads=2, num_hidden_layers=2,
                                      chunk_size=16, eos_token_id=256, bos_token_id=None, pad_token_id=None))
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.3 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf")
    directory = tmp_path / "zoo"
    save_pretrained(build_model(f"local-dir:{tmp_path / 'hf'}"), directory)
    save_byte_tokenizer(directory)
    tokenizer = make_tokenizer(f"local-dir:{directory}", "")  # as a recipe's data.tokenizer names it
    assert tokenizer.encode("ab c") == BYTES.encode("ab c") and tokenizer.eos_id == 256

    from lm_eval.tasks import TaskManager

    def run(model, args, batch_size):
        return simple_evaluate(model=model, model_args=args, tasks=TASKS, batch_size=batch_size, device="cpu",
                               bootstrap_iters=0,
                               task_manager=TaskManager(include_path=str(task_dir), include_defaults=False))

    theirs = run("hf", f"pretrained={directory},dtype=float32", 1)
    ours = run("xlstm-zoo", f"pretrained=local-dir:{directory},dtype=float32", 4)
    for task in TASKS:
        for a, b in zip(ours["samples"][task], theirs["samples"][task]):
            if task == "t_gen":
                assert a["resps"] == b["resps"]
            else:
                assert all(rel(g, w) < 1e-4 for g, w in zip(_scores(a), _scores(b))), task
        for key, value in theirs["results"][task].items():
            if key.endswith(",none") and isinstance(value, float):
                assert rel(ours["results"][task][key], value) < 1e-4 or value == ours["results"][task][key], key


def _one_line_error(capsys, argv) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_bad_task_missing_file_and_wrong_tokenizer_are_one_line(capsys, model_dir, task_dir, tmp_path):
    base = ["lm-eval", f"local-dir:{model_dir}", "--include-path", str(task_dir), "--device", "cpu"]
    assert "'t_mcq' not found (did you mean t_mc" in _one_line_error(capsys, base + ["--tasks", "t_mcq"])

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "t_missing.yaml").write_text((task_dir / "t_ll.yaml").read_text().replace("t_ll", "t_missing")
                                           .replace("ll.jsonl", "nowhere.jsonl"))
    line = _one_line_error(capsys, base + ["--include-path", str(broken), "--tasks", "t_missing"])
    assert "t_missing" in line and "nowhere.jsonl" in line

    line = _one_line_error(capsys, base + ["--tasks", "t_ll", "--tokenizer", "gpt2"])
    assert "50257 tokens but the model's vocab_size is 258" in line


def test_eval_data_is_stateful_perplexity(capsys, model_dir, tmp_path):
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": line}) + "\n" for line in LINES))
    assert cli_main(["eval", f"local-dir:{model_dir}", "--data", str(data), "--tokenizer", "byte",
                     "--chunk-size", "8", "--batch-size", "3"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model = build_model(f"local-dir:{model_dir}").eval()
    nats = -sum(_logprobs(model, [BOS] + BYTES.encode(line)).double().sum().item() for line in LINES)
    tokens = sum(len(line.encode()) for line in LINES)
    assert metrics["tokens"] == tokens
    assert rel(metrics["loss"], nats / tokens) < 1e-5
    assert rel(metrics["bits_per_byte"], nats / math.log(2) / tokens) < 1e-5
    assert metrics["tokens_per_s"] > 0


def test_xlstm_zoo_lm_is_an_lm_eval_model(model_dir):
    """Constructed as lm-eval constructs models (batch_size, max_batch_size, device keywords)."""
    from lm_eval.api.registry import get_model

    lm = get_model("xlstm-zoo").create_from_arg_string(f"pretrained=local-dir:{model_dir},tokenizer=byte",
                                                       {"batch_size": "auto", "max_batch_size": 8, "device": "cpu"})
    assert isinstance(lm, XLSTMZooLM) and lm.batch_size == 8
    assert lm.tok_encode("ab") == [BOS, 97, 98] and lm.prefix_token_id == BOS and lm.eot_token_id == EOS
    assert get_model("hf").__name__ == "HFLM"  # built-in models still resolve after our registration


def test_lm_eval_results_in_entries_are_validated(tmp_path):
    from xlstm_zoo.schemas.entry import ZooEntry
    from xlstm_zoo.schemas.errors import ConfigError
    from xlstm_zoo.schemas.yaml_io import load_yaml, validate_document

    def validate(results):
        path = tmp_path / "entry.yaml"  # JSON is YAML
        model = {"kind": "xlstm-lm", "vocab_size": 8, "embedding_dim": 16, "num_blocks": 1, "mlstm_block": {"kind": "mlstm-block"}}
        path.write_text(json.dumps({"name": "x", "description": "d", "model": model, "results": results}))
        return validate_document(ZooEntry, load_yaml(path))

    good = {"task": "lm-eval:hellaswag", "dataset": "d", "metric": "acc_norm", "value": 0.5, "num_fewshot": 0}
    assert validate([good]).results[0].lm_eval_task == "hellaswag"
    with pytest.raises(ConfigError) as e:
        validate([{**good, "task": "lm-eval:", "num_fewshot": None}, {**good, "task": "perplexity"}, {**good, "status": "reproduced"}])
    assert [p.path for p in e.value.problems] == ["results.0.task", "results.1.num_fewshot", "results.2.recipe"]


def test_the_core_never_imports_lm_eval():
    import subprocess
    import sys

    code = ("import sys, xlstm_zoo, xlstm_zoo.registry.cli, xlstm_zoo.registry.pipelines.reproduce, "
            "xlstm_zoo.registry.pipelines.evaluate, xlstm_zoo.registry.scoring; print('lm_eval' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=300)
    assert out.stdout.strip() == "False", out.stderr
