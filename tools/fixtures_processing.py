"""Dev-only: writes the processing fixtures (feature extractor, tokenizer, processor) used by the tests.

Needs transformers>=5 (and numpy); the test suite itself never imports transformers or torch:

    /work/venvs/ref/bin/python tools/fixtures_processing.py

Writes into tests/fixtures/processing/:
    hub_files/       the four hub files of a HuBERT CTC checkpoint, as facebook/hubert-large-ls960-ft
                     ships them (preprocessor_config.json, vocab.json, tokenizer_config.json,
                     special_tokens_map.json).
    hub_files_v5/    the same processor after transformers 5's save_pretrained (processor_config.json,
                     and a tokenizer_config.json with added_tokens_decoder), to check we read it.
    feature_extraction.json + .npz   Wav2Vec2FeatureExtractor cases: inputs, call arguments, outputs.
    tokenization.json                Wav2Vec2CTCTokenizer encode / decode / batch_decode cases.
    processor.json + .npz            Wav2Vec2Processor on audio + text.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "processing")

VOCAB = {
    "<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8, "N": 9, "I": 10,
    "H": 11, "S": 12, "R": 13, "D": 14, "L": 15, "U": 16, "M": 17, "W": 18, "C": 19, "F": 20, "G": 21,
    "Y": 22, "P": 23, "B": 24, "V": 25, "K": 26, "'": 27, "X": 28, "J": 29, "Q": 30, "Z": 31,
}
PREPROCESSOR = {
    "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
    "padding_side": "right", "padding_value": 0, "return_attention_mask": True, "sampling_rate": 16000,
}
TOKENIZER_CONFIG = {
    "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
    "do_lower_case": False, "word_delimiter_token": "|", "tokenizer_class": "Wav2Vec2CTCTokenizer",
}
SPECIAL_TOKENS_MAP = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def write_hub_files(folder):
    os.makedirs(folder, exist_ok=True)
    for name, content in (("preprocessor_config.json", PREPROCESSOR), ("vocab.json", VOCAB),
                          ("tokenizer_config.json", TOKENIZER_CONFIG),
                          ("special_tokens_map.json", SPECIAL_TOKENS_MAP)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2)
            f.write("\n")


# ----------------------------------------------------------------------------------------------
# Feature extractor
# ----------------------------------------------------------------------------------------------

def feature_extraction_cases(rng):
    """(name, extractor overrides, inputs, call kwargs). Inputs: list of arrays, or one array."""
    def wave(n, dtype=np.float32, scale=0.3, offset=0.05):
        return (offset + scale * rng.standard_normal(n)).astype(dtype)

    batch = [wave(603), wave(320), wave(488)]
    return [
        ("single_default", {}, wave(400), dict(return_tensors="np")),
        ("single_unnormalized_none", {"do_normalize": False}, wave(500), dict()),
        ("longest", {}, batch, dict(padding="longest", return_tensors="np")),
        ("longest_true_lists", {}, batch, dict(padding=True)),
        ("max_length_truncation", {}, batch, dict(padding="max_length", max_length=450, truncation=True,
                                                  return_tensors="np")),
        ("max_length_pad_only", {}, batch, dict(padding="max_length", max_length=700, return_tensors="np")),
        ("pad_to_multiple_of", {}, batch, dict(padding=True, pad_to_multiple_of=128, return_tensors="np")),
        ("truncation_multiple_of", {}, batch, dict(padding="max_length", max_length=350, truncation=True,
                                                   pad_to_multiple_of=128, return_tensors="np")),
        ("no_padding_lists", {}, batch, dict(padding=False)),
        ("no_padding_truncation", {}, batch, dict(max_length=350, truncation=True)),
        ("no_attention_mask", {}, batch, dict(padding=True, return_attention_mask=False, return_tensors="np")),
        ("config_no_attention_mask", {"return_attention_mask": False}, batch,
         dict(padding=True, return_tensors="np")),
        ("not_normalized", {"do_normalize": False}, batch, dict(padding=True, return_tensors="np")),
        ("padding_value", {"padding_value": -1.5}, batch, dict(padding=True, return_tensors="np")),
        ("float64_batch", {}, [wave(300, np.float64), wave(451, np.float64)],
         dict(padding=True, return_tensors="np")),
        ("python_floats", {}, [float(x) for x in wave(257)], dict(return_tensors="np")),
        ("array_2d", {}, np.stack([wave(400), wave(400)]), dict(padding=True, return_tensors="np")),
        ("constant_signal", {}, [np.full(300, 0.25, np.float32), wave(200)], dict(padding=True, return_tensors="np")),
        ("loud", {}, [wave(333, scale=1000.0, offset=20.0)], dict(padding=True, return_tensors="np")),
    ]


def write_feature_extraction(folder):
    from transformers import Wav2Vec2FeatureExtractor

    rng = np.random.default_rng(1234)
    arrays, manifest = {}, []
    for name, overrides, inputs, kwargs in feature_extraction_cases(rng):
        extractor = Wav2Vec2FeatureExtractor(**{**PREPROCESSOR, **overrides})
        out = extractor(inputs, sampling_rate=16000, **kwargs)
        entry = {"name": name, "overrides": overrides, "kwargs": kwargs}
        if isinstance(inputs, list) and not isinstance(inputs[0], float):
            entry["inputs"] = [f"{name}/input_{i}" for i in range(len(inputs))]
            for i, x in enumerate(inputs):
                arrays[f"{name}/input_{i}"] = x
        else:
            entry["inputs"] = f"{name}/input"
            arrays[f"{name}/input"] = np.asarray(inputs)
            entry["input_kind"] = "list_of_floats" if isinstance(inputs, list) else "array"
        entry["outputs"] = {}
        for key, value in out.items():
            if isinstance(value, np.ndarray):
                arrays[f"{name}/{key}"] = value
                entry["outputs"][key] = {"kind": "array", "dtype": str(value.dtype)}
            else:
                for i, row in enumerate(value):
                    arrays[f"{name}/{key}_{i}"] = row
                entry["outputs"][key] = {"kind": "list", "length": len(value), "dtype": str(value[0].dtype)}
        manifest.append(entry)
    np.savez_compressed(os.path.join(folder, "feature_extraction.npz"), **arrays)
    with open(os.path.join(folder, "feature_extraction.json"), "w") as f:
        json.dump(manifest, f, indent=1)


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------

ENCODE_TEXTS = [
    "HELLO WORLD", "hello world", "A <unk> B", "A<unk>B", "A  B ", " A", "<s>HI</s>", "HI <pad> THERE",
    "É", "", "A|B", "A | B", "AB\tC\nD", "IT'S A TEST", "<unk><unk>", "A <s> B </s> C", "  <unk>  X  ",
    "WHAT?! NO.", "<UNK>", "<un", "<s><unk>", "Ünïcödé ß", "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
]


def ctc_sequences(rng, count=24):
    """Random greedy-CTC-like id sequences: runs of repeats, many blanks, some specials and unknown ids."""
    sequences = []
    for _ in range(count):
        ids = []
        for _ in range(rng.integers(0, 25)):
            r = rng.random()
            token = 0 if r < 0.35 else 4 if r < 0.5 else int(rng.integers(1, 4)) if r < 0.56 else \
                int(rng.integers(32, 40)) if r < 0.58 else int(rng.integers(5, 32))
            ids += [token] * int(rng.integers(1, 4))
        sequences.append(ids)
    sequences += [[], [0, 0, 0], [4, 4, 0, 4], [7, 7, 0, 7, 4, 99, 5], [11, 11, 0, 10, 4, 4, 0, 6, 6, 11, 5, 0, 0],
                  [1, 11, 2, 3, 0, 4], [4, 7, 7, 0, 4, 4, 3, 5, 4], [10, 6, 4, 27, 12, 4, 7]]
    return sequences


def tokenizer_cases(tokenizer, rng, num_sequences):
    encode = []
    for text in ENCODE_TEXTS:
        encode.append({"text": text, "kwargs": {}, "expected": dict(tokenizer(text))})
    batch_kwargs = [
        {"padding": True}, {"padding": "max_length", "max_length": 12}, {"padding": True, "pad_to_multiple_of": 8},
        {"padding": False}, {"truncation": True, "max_length": 4}, {"padding": True, "padding_side": "left"},
    ]
    batch_texts = ["HI", "HELLO THERE", "A <unk> B", "Z"]
    for kwargs in batch_kwargs:
        encode.append({"text": batch_texts, "kwargs": kwargs, "expected": dict(tokenizer(batch_texts, **kwargs))})
    for kwargs in ({"padding": "max_length", "max_length": 5}, {"padding": True, "pad_to_multiple_of": 4}):
        encode.append({"text": "AB", "kwargs": kwargs, "expected": dict(tokenizer("AB", **kwargs))})

    decode = []
    option_sets = [
        {}, {"skip_special_tokens": True}, {"group_tokens": False},
        {"output_char_offsets": True, "output_word_offsets": True},
        {"output_word_offsets": True, "skip_special_tokens": True},
        {"output_char_offsets": True, "group_tokens": False},
        {"spaces_between_special_tokens": True}, {"clean_up_tokenization_spaces": True},
    ]
    for ids in ctc_sequences(rng, num_sequences):
        for options in option_sets:
            out = tokenizer.decode(ids, **options)
            decode.append({"ids": ids, "kwargs": options, "expected": _plain(out)})
    batch = [[7, 7, 0, 7], [4, 5], [], [11, 0, 11, 4, 10]]
    batch_decode = []
    for options in ({}, {"output_word_offsets": True}, {"output_char_offsets": True, "skip_special_tokens": True}):
        expected = _plain(tokenizer.batch_decode(batch, **options))
        batch_decode.append({"ids": batch, "kwargs": options, "expected": expected})
    return {"encode": encode, "decode": decode, "batch_decode": batch_decode}


def _plain(out):
    """Decoder output as JSON: a str, a list of str, or {text, char_offsets, word_offsets} with ints."""
    if isinstance(out, (str, list)):
        return out
    def ints(value):
        if isinstance(value, list):
            return [ints(v) for v in value]
        if isinstance(value, dict):
            return {k: (int(v) if k.endswith("_offset") else v) for k, v in value.items()}
        return value
    return {"text": out.text, "char_offsets": ints(out.char_offsets), "word_offsets": ints(out.word_offsets)}


def write_tokenization(folder, hub_dir):
    from transformers import Wav2Vec2CTCTokenizer

    rng = np.random.default_rng(99)
    fixtures = {"transformers_tokenizer": "Wav2Vec2CTCTokenizer", "configs": {}}
    configs = {"hub": {}, "lower_case": {"do_lower_case": True}, "clean_up": {"clean_up_tokenization_spaces": True}}
    for name, overrides in configs.items():
        tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(hub_dir, **overrides)
        # The variants need fewer decode cases: they change encoding and the final text only.
        cases = tokenizer_cases(tokenizer, rng, 24 if name == "hub" else 6)
        fixtures["configs"][name] = {"overrides": overrides, **cases}
        fixtures["configs"][name]["special"] = {
            "all_special_tokens": tokenizer.all_special_tokens, "all_special_ids": tokenizer.all_special_ids,
            "pad_token_id": tokenizer.pad_token_id, "word_delimiter_token_id": tokenizer.word_delimiter_token_id,
            "vocab_size": tokenizer.vocab_size, "len": len(tokenizer),
        }
    with open(os.path.join(folder, "tokenization.json"), "w") as f:
        json.dump(fixtures, f, separators=(",", ":"), ensure_ascii=False)


def write_v5_saved(folder, hub_dir):
    """The hub files after a transformers 5 load + save_pretrained round trip."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2Processor

    shutil.rmtree(folder, ignore_errors=True)
    Wav2Vec2Processor.from_pretrained(hub_dir).save_pretrained(folder)
    # An added (non-vocabulary) token, as a fine-tuning script might add; checks added_tokens_decoder.
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(["<laugh>"])
    tokenizer.save_pretrained(folder)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(folder)
    texts = ["A <laugh> B", "HI<laugh>", "<unk> <laugh>"]
    return {
        "files": sorted(os.listdir(folder)),
        "encode": [{"text": t, "expected": tokenizer(t)["input_ids"]} for t in texts],
        "decode": [{"ids": ids, "expected": tokenizer.decode(ids)} for ids in ([7, 32, 32, 0, 24], [32, 4, 11])],
        "len": len(tokenizer),
    }


# ----------------------------------------------------------------------------------------------
# Processor
# ----------------------------------------------------------------------------------------------

def write_processor(folder, hub_dir):
    from transformers import Wav2Vec2Processor

    processor = Wav2Vec2Processor.from_pretrained(hub_dir)
    rng = np.random.default_rng(7)
    audio = [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in (1600, 1100, 1450)]
    texts = ["HELLO WORLD", "HI", "IT'S <unk> OK"]
    out = processor(audio=audio, text=texts, sampling_rate=16000, padding=True, return_tensors="np")
    # Our labels: the reference's padded input_ids with -100 where the tokenizer's mask is 0.
    encoded = processor.tokenizer(texts, padding=True, return_tensors="np")
    labels = np.where(encoded["attention_mask"] == 1, encoded["input_ids"], -100)
    arrays = {f"audio_{i}": a for i, a in enumerate(audio)}
    arrays.update(input_values=out["input_values"], attention_mask=out["attention_mask"],
                  reference_labels=out["labels"], labels=labels)
    np.savez_compressed(os.path.join(folder, "processor.npz"), **arrays)
    decoded = processor.batch_decode(np.array([[11, 11, 0, 10, 4, 6], [0, 0, 27, 12, 12, 4]]))
    with open(os.path.join(folder, "processor.json"), "w") as f:
        json.dump({"texts": texts, "batch_decode": decoded}, f, indent=1)


def main():
    import transformers

    os.makedirs(OUT, exist_ok=True)
    hub_dir = os.path.join(OUT, "hub_files")
    write_hub_files(hub_dir)
    write_feature_extraction(OUT)
    write_tokenization(OUT, hub_dir)
    v5 = write_v5_saved(os.path.join(OUT, "hub_files_v5"), hub_dir)
    with open(os.path.join(OUT, "hub_files_v5.json"), "w") as f:
        json.dump(v5, f, indent=1)
    write_processor(OUT, hub_dir)
    with open(os.path.join(OUT, "SOURCE.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "numpy": np.__version__,
                   "script": "tools/fixtures_processing.py"}, f, indent=1)
    total = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(OUT) for name in names)
    print(f"processing fixtures -> {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
