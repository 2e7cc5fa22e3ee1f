"""Documents of the lm-eval tasks shakespeare_heldout and shakespeare_next_line, built from the Sonnets at the
end of the shipped corpus (zoo/data/shakespeare.jsonl.gz).

Only complete sonnets inside the last 5% of the corpus's characters are used: recipes on this corpus hold out
its last 10% (`val_fraction: 0.1`), so no model trained by them has seen these lines. lm-eval calls these
functions (`custom_dataset` in the YAML files beside this one) with the task's metadata as keywords.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "data" / "shakespeare.jsonl.gz"
HELD_OUT = 0.05
NUMERAL = re.compile(r"^[IVXLC]+$")


def sonnets() -> list[list[str]]:
    """The lines of each complete sonnet in the held-out tail, in order (blank-line separated blocks: a roman
    numeral, then its poem)."""
    if not CORPUS.is_file():
        raise FileNotFoundError(f"shakespeare tasks: the corpus {CORPUS} does not exist")
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        corpus = "\n\n".join(json.loads(line)["text"] for line in f)
    tail = corpus[int(len(corpus) * (1 - HELD_OUT)):]
    blocks = [b for b in tail.split("\n\n") if b.strip()]
    poems = []
    for header, body in zip(blocks, blocks[1:]):
        if NUMERAL.match(header.strip()) and not NUMERAL.match(body.strip()):
            poems.append(body.split("\n"))
    return poems


def _dataset(rows: list[dict]):
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def heldout(**metadata):
    """One document per sonnet, its lines as printed (rolling log-likelihood, no window)."""
    return _dataset([{"text": "\n".join(poem)} for poem in sonnets()])


def next_line(lines_per_sonnet: int = 3, choices: int = 4, seed: int = 0, **metadata):
    """Two consecutive lines of a sonnet, then its true next line among other orders of that line's words
    (indentation stripped): a model that knows the language's word order picks it, a random one is at
    1/choices. Seeded, so the task never changes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for poem in sonnets():
        poem = [line.strip() for line in poem if line.strip()]
        candidates = [i for i in range(2, len(poem)) if len(poem[i].split()) >= 4]  # 4! orders: enough to draw
        for i in sorted(rng.choice(candidates, lines_per_sonnet, replace=False).tolist()):
            words = poem[i].split()
            options = [" ".join(words)]
            while len(options) < choices:
                shuffled = " ".join(rng.permutation(words).tolist())
                if shuffled not in options:
                    options.append(shuffled)
            order = rng.permutation(choices).tolist()
            rows.append({"context": f"{poem[i - 2]}\n{poem[i - 1]}\n", "choices": [options[j] for j in order],
                         "label": order.index(0)})
    return _dataset(rows)
