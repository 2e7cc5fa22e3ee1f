"""Property-based: encode then decode is the identity wherever a tokenizer promises it (byte and GPT-2: any
text UTF-8 can encode; char: any text over the corpus's characters), each one saved as a Hugging Face
tokenizer.json (what a run writes beside its model) reads back with the same ids and text, and ids or characters
a tokenizer cannot take are a ValueError naming them.

Seeds: derandomized (examples follow from the test's name); example counts and deadlines are below
(deadlines are hang guards, loose for a loaded 2-core CI machine: an example takes milliseconds).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from xlstm_zoo.registry.checkpoints import save_tokenizer
from xlstm_zoo.registry.data.tokenizers import TOKENIZER_FILE, ByteTokenizer, CharTokenizer, GPT2Tokenizer, HFTokenizer

PROFILE = dict(derandomize=True, database=None, deadline=10000)
# Any code point UTF-8 can encode (lone surrogates cannot), weighted towards the hard cases: whitespace runs,
# combining marks, astral characters, GPT-2's contractions.
PIECES = [" ", "  ", "\n", "\t", "\r\n", "'s", "'ll", "\u0301", "\U0001f600", "\u200d", "\x00", "x'"]
TEXT = st.lists(st.one_of(st.characters(codec="utf-8"), st.sampled_from(PIECES)), max_size=40).map("".join)


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer()


@settings(max_examples=300, **PROFILE)
@given(text=TEXT)
def test_byte_and_gpt2_round_trip_any_text(gpt2, text):
    assert ByteTokenizer().decode(ByteTokenizer().encode(text)) == text
    ids = gpt2.encode(text)
    assert all(0 <= i < gpt2.vocab_size for i in ids) and gpt2.decode(ids) == text


def saved(tokenizer, directory) -> HFTokenizer:
    save_tokenizer(tokenizer, directory)
    return HFTokenizer(directory / TOKENIZER_FILE)


@pytest.fixture(scope="module")
def saved_byte_and_gpt2(gpt2, tmp_path_factory):
    return [(t, saved(t, tmp_path_factory.mktemp(type(t).__name__))) for t in (ByteTokenizer(), gpt2)]


@settings(max_examples=200, **PROFILE)
@given(text=TEXT)
def test_byte_and_gpt2_saved_as_tokenizer_json_encode_and_decode_the_same(saved_byte_and_gpt2, text):
    for tokenizer, read_back in saved_byte_and_gpt2:
        ids = tokenizer.encode(text)
        assert read_back.encode(text) == ids and read_back.decode(ids) == text
        assert (read_back.vocab_size, read_back.eos_id) == (tokenizer.vocab_size, tokenizer.eos_id)


@settings(max_examples=50, **PROFILE)
@given(corpus=TEXT.filter(bool), data=st.data())
def test_char_saved_as_tokenizer_json_encodes_and_decodes_the_same(tmp_path_factory, corpus, data):
    tokenizer = CharTokenizer(corpus)
    read_back = saved(tokenizer, tmp_path_factory.mktemp("char"))
    text = data.draw(st.text(st.sampled_from(tokenizer.chars), max_size=40))
    ids = tokenizer.encode(text)
    assert read_back.encode(text) == ids and read_back.decode(ids) == text
    assert (read_back.vocab_size, read_back.eos_id) == (tokenizer.vocab_size, None)


@settings(max_examples=100, **PROFILE)
@given(corpus=TEXT.filter(bool), data=st.data())
def test_char_round_trips_text_over_its_corpus_and_names_a_foreign_character(corpus, data):
    tokenizer = CharTokenizer(corpus)
    text = data.draw(st.text(st.sampled_from(sorted(set(corpus))), max_size=40))
    assert tokenizer.decode(tokenizer.encode(text)) == text
    foreign = data.draw(st.characters(codec="utf-8").filter(lambda c: c not in corpus))
    with pytest.raises(ValueError, match="position"):
        tokenizer.encode(text + foreign)


@settings(max_examples=30, **PROFILE)
@given(bad=st.one_of(st.integers(max_value=-1), st.integers(min_value=256)), data=st.data())
def test_decoding_an_id_outside_the_vocabulary_names_it(gpt2, bad, data):
    for tokenizer in (ByteTokenizer(), CharTokenizer("abc"), gpt2):
        if 0 <= bad < tokenizer.vocab_size:
            continue
        with pytest.raises(ValueError, match=rf"ids\[1\]: expected a token id in \[0, {tokenizer.vocab_size - 1}\]"):
            tokenizer.decode([0, bad])
