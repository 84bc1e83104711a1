"""HubertCTCTokenizer: parity with transformers' Wav2Vec2CTCTokenizer, labels, file I/O, bad input.

Reference ids, texts and offsets come from tools/fixtures_processing.py (transformers 5) via
tests/fixtures/processing/tokenization.json.
"""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubert_tf.processing import HubertCTCTokenizer, HubertCTCTokenizerOutput

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "processing")
HUB_FILES = os.path.join(FIXTURES, "hub_files")

with open(os.path.join(FIXTURES, "tokenization.json"), encoding="utf-8") as _f:
    REFERENCE = json.load(_f)["configs"]


def hub_tokenizer(**overrides):
    return HubertCTCTokenizer.from_pretrained(HUB_FILES, **overrides)


def as_plain(output):
    """Decoder output in the fixture's JSON form."""
    if isinstance(output, HubertCTCTokenizerOutput):
        return {"text": output.text, "char_offsets": output.char_offsets, "word_offsets": output.word_offsets}
    return output


@pytest.mark.parametrize("config", sorted(REFERENCE))
def test_encode_matches_reference(config):
    tokenizer = hub_tokenizer(**REFERENCE[config]["overrides"])
    for case in REFERENCE[config]["encode"]:
        assert dict(tokenizer(case["text"], **case["kwargs"])) == case["expected"], (case["text"], case["kwargs"])


@pytest.mark.parametrize("config", sorted(REFERENCE))
def test_decode_matches_reference_including_offsets(config):
    tokenizer = hub_tokenizer(**REFERENCE[config]["overrides"])
    cases = REFERENCE[config]["decode"]
    assert len(cases) >= 100
    for case in cases:
        assert as_plain(tokenizer.decode(case["ids"], **case["kwargs"])) == case["expected"], case


@pytest.mark.parametrize("config", sorted(REFERENCE))
def test_batch_decode_matches_reference(config):
    tokenizer = hub_tokenizer(**REFERENCE[config]["overrides"])
    for case in REFERENCE[config]["batch_decode"]:
        assert as_plain(tokenizer.batch_decode(case["ids"], **case["kwargs"])) == case["expected"], case


@pytest.mark.parametrize("config", sorted(REFERENCE))
def test_special_tokens_match_reference(config):
    tokenizer = hub_tokenizer(**REFERENCE[config]["overrides"])
    special = REFERENCE[config]["special"]
    assert tokenizer.all_special_tokens == special["all_special_tokens"]
    assert tokenizer.all_special_ids == special["all_special_ids"]
    assert tokenizer.pad_token_id == special["pad_token_id"]
    assert tokenizer.word_delimiter_token_id == special["word_delimiter_token_id"]
    assert (tokenizer.vocab_size, len(tokenizer)) == (special["vocab_size"], special["len"])


def test_loads_transformers5_saved_files_with_added_token():
    with open(os.path.join(FIXTURES, "hub_files_v5.json")) as f:
        reference = json.load(f)
    tokenizer = HubertCTCTokenizer.from_pretrained(os.path.join(FIXTURES, "hub_files_v5"))
    assert len(tokenizer) == reference["len"]
    for case in reference["encode"]:
        assert tokenizer(case["text"])["input_ids"] == case["expected"]
    for case in reference["decode"]:
        assert tokenizer.decode(case["ids"]) == case["expected"]


def test_decode_accepts_numpy_and_tf():
    import tensorflow as tf

    tokenizer = hub_tokenizer()
    ids = [11, 11, 0, 10, 4, 6, 11, 5]
    expected = tokenizer.decode(ids)
    assert expected == "HI THE"
    for converted in (np.array(ids), np.array(ids, np.int32), tf.constant(ids), tf.constant(ids, tf.int64)):
        assert tokenizer.decode(converted) == expected
    batch = np.array([ids, ids[::-1]])
    assert tokenizer.batch_decode(tf.constant(batch)) == tokenizer.batch_decode(batch.tolist())
    assert tokenizer.decode(np.int64(7)) == "A"
    offsets = tokenizer.decode(tf.constant(ids), output_word_offsets=True).word_offsets
    assert offsets[0] == {"word": "HI", "start_offset": 0, "end_offset": 4}
    assert all(type(o["start_offset"]) is int for o in offsets)


def test_decode_rejects_logits_and_batches():
    tokenizer = hub_tokenizer()
    with pytest.raises(TypeError, match="argmax"):
        tokenizer.decode(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="batch_decode"):
        tokenizer.decode(np.zeros((2, 5), np.int64))
    with pytest.raises(ValueError, match="batch"):
        tokenizer.batch_decode(np.zeros(5, np.int64))


def test_labels_are_padded_with_minus_100():
    tokenizer = hub_tokenizer()
    assert tokenizer.encode_labels(["HI", "A B"]) == [[11, 10, -100], [7, 4, 24]]
    assert tokenizer.encode_labels("HI", pad_to_multiple_of=4) == [[11, 10, -100, -100]]
    labels = tokenizer.encode_labels(["HI <pad>", "A"], return_tensors="np")
    # A literal pad token in the text stays a label; only padding becomes -100.
    assert labels.tolist() == [[11, 10, 0], [7, -100, -100]]
    assert tokenizer.pad_labels([[1, 2], [3]]) == [[1, 2], [3, -100]]


def test_return_tensors():
    import tensorflow as tf

    tokenizer = hub_tokenizer()
    single = tokenizer("HI", return_tensors="np")
    assert single.input_ids.shape == (1, 2) and single.input_ids.dtype == np.int64
    batch = tokenizer(["HI", "A"], padding=True, return_tensors="tf")
    assert batch["input_ids"].dtype == tf.int32 and batch.attention_mask.numpy().tolist() == [[1, 1], [1, 0]]
    labels = tokenizer.encode_labels(["HI", "A"], return_tensors="tf")
    assert labels.dtype == tf.int32 and labels.numpy().tolist() == [[11, 10], [7, -100]]
    with pytest.raises(ValueError, match="padding=True"):
        tokenizer(["HI", "A"], return_tensors="np")
    assert "attention_mask" not in tokenizer("HI", return_attention_mask=False)


def test_bad_text_and_vocab():
    with pytest.raises(TypeError, match="str"):
        hub_tokenizer()(42)
    with pytest.raises(TypeError, match="str"):
        hub_tokenizer()(["A", None])
    with pytest.raises(ValueError, match="vocab"):
        HubertCTCTokenizer({})
    with pytest.raises(ValueError, match="padding_side"):
        HubertCTCTokenizer({"A": 0}, padding_side="up")


def test_nested_vocabulary_needs_target_lang():
    vocab = {"eng": {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3}, "fra": {"<pad>": 0, "<unk>": 1, "|": 2, "É": 3}}
    with pytest.raises(ValueError, match="target_lang"):
        HubertCTCTokenizer(vocab)
    with pytest.raises(ValueError, match="deu"):
        HubertCTCTokenizer(vocab, target_lang="deu")
    french = HubertCTCTokenizer(vocab, target_lang="fra")
    assert french("É A")["input_ids"] == [3, 2, 1]


def test_save_and_load_round_trip(tmp_path):
    tokenizer = HubertCTCTokenizer.from_pretrained(os.path.join(FIXTURES, "hub_files_v5"))
    paths = tokenizer.save_pretrained(tmp_path)
    assert sorted(os.path.basename(p) for p in paths) == [
        "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "Wav2Vec2CTCTokenizer"
    assert config["processor_class"] == "Wav2Vec2Processor"  # unknown keys are kept
    assert config["added_tokens_decoder"]["32"]["content"] == "<laugh>"
    reloaded = HubertCTCTokenizer.from_pretrained(tmp_path)
    text = "HELLO <laugh> <unk> WORLD"
    assert reloaded(text) == tokenizer(text)
    assert reloaded.get_vocab() == tokenizer.get_vocab()


def test_missing_vocab_names_the_file(tmp_path):
    with pytest.raises(OSError, match="vocab.json"):
        HubertCTCTokenizer.from_pretrained(tmp_path)


_VOCAB_CHARS = "ETAONIHSRDLUMWCFGYPBVK'XJQZ"
_texts = st.text(alphabet=_VOCAB_CHARS + " ", max_size=40)


@settings(max_examples=50, deadline=None)
@given(text=_texts)
def test_round_trip_without_grouping(text):
    tokenizer = hub_tokenizer()
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids, group_tokens=False) == text.strip()


@settings(max_examples=50, deadline=None)
@given(text=_texts, data=st.data())
def test_round_trip_through_ctc_alignment(text, data):
    """Any CTC alignment of the ids (repeats, blanks, and blanks between doubled letters) decodes back."""
    tokenizer = hub_tokenizer()
    frames = []
    for index, token in enumerate(tokenizer(text)["input_ids"]):
        if index and frames and frames[-1] == token or data.draw(st.booleans()):
            frames.append(tokenizer.pad_token_id)
        frames += [token] * data.draw(st.integers(1, 3))
    assert tokenizer.decode(frames) == text.strip()
    words = tokenizer.decode(frames, output_word_offsets=True).word_offsets
    assert [w["word"] for w in words] == text.split()
    assert all(0 <= w["start_offset"] < w["end_offset"] <= len(frames) for w in words)


# ------------------------------------------------------------------------- the one CTC decoding table
TABLE_TOKENIZERS = {
    "hub": hub_tokenizer,
    "lower_clean": lambda: HubertCTCTokenizer(
        {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "'": 6, ".": 7, "S": 8},
        do_lower_case=True, clean_up_tokenization_spaces=True),
    "delimiter_is_pad": lambda: HubertCTCTokenizer({"|": 0, "A": 1, "B": 2, "C": 3}, pad_token="|"),
    "custom_replacement": lambda: HubertCTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3},
                                                     replace_word_delimiter_char="_"),
}


def decode_with_table(table, ids):
    """The algorithm `CTCDecodingTable` documents (what the serving graph implements), in plain Python."""
    ids = [i for i in ids if not table.dropped[i]]
    merged = [i for k, i in enumerate(ids) if k == 0 or table.merge_ids[i] != table.merge_ids[ids[k - 1]]]
    text = "".join(table.pieces[i] for i in merged if not table.blank[i]).strip()
    if table.lower_case:
        text = text.lower()
    for before, after in table.clean_up:
        text = text.replace(before, after)
    return text


@pytest.mark.parametrize("skip_special_tokens", [False, True])
@pytest.mark.parametrize("name", sorted(TABLE_TOKENIZERS))
def test_decoding_table_gives_the_text_of_decode(name, skip_special_tokens):
    tokenizer = TABLE_TOKENIZERS[name]()
    num_classes = max(len(tokenizer.get_vocab()) + 3, 12)  # a few ids the tokenizer does not know
    table = tokenizer.ctc_decoding_table(num_classes, skip_special_tokens=skip_special_tokens)
    assert table.size == num_classes and table.merge_ids.dtype == np.int32
    rng = np.random.default_rng(3)
    for _ in range(300):
        ids = rng.integers(0, num_classes, size=rng.integers(0, 40)).tolist()
        if ids:
            ids[:: 3] = rng.integers(0, 5, size=len(ids[:: 3])).tolist()  # blanks, specials, runs
        assert decode_with_table(table, ids) == tokenizer.decode(ids, skip_special_tokens=skip_special_tokens), ids


def test_decoding_table_fields():
    tokenizer = TABLE_TOKENIZERS["lower_clean"]()
    table = tokenizer.ctc_decoding_table(12, skip_special_tokens=True)
    assert table.pieces[4] == " " and table.pieces[5] == "A"
    assert table.blank.tolist() == [True] + [False] * 11
    assert table.dropped[:5].tolist() == [True, True, True, True, False]  # the delimiter is never dropped
    assert table.merge_ids[9:].tolist() == [3, 3, 3]  # unknown ids decode (and merge) as <unk>
    assert table.pad_id == 0 and table.lower_case
    from hubert_tf.processing.tokenization import CLEAN_UP_REPLACEMENTS

    assert table.clean_up == CLEAN_UP_REPLACEMENTS and TABLE_TOKENIZERS["hub"]().ctc_decoding_table().clean_up == ()
