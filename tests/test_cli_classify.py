"""`hubert-tf classify FILE... --model DIR [--top-k K] [--format text|json|jsonl]` (issue 17): the
library's `classify` pipeline behind the CLI's options and output formats."""

import json

import numpy as np
import pytest

from conftest import fixture_dir
from test_cli import hubert_tf_cli, write_wav
from test_cli_outputs import without_tensorflow


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    return [write_wav(root / "a.wav", 1.5, 0), write_wav(root / "b.wav", 2.2, 1)]


def test_classify_prints_top_k_labels(clips):
    model = fixture_dir("cls")
    result = hubert_tf_cli("classify", *clips, "--model", model, "--top-k", "2", "--format", "json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    document = json.loads(result.stdout)
    assert [d["file"] for d in document] == clips
    from hubert_tf import classify

    for entry, clip in zip(document, clips):
        expected = classify(clip, model, top_k=2)  # the library's pipeline, in this process
        assert [e["label"] for e in entry["labels"]] == [e["label"] for e in expected]
        np.testing.assert_allclose([e["score"] for e in entry["labels"]], [e["score"] for e in expected],
                                   atol=1e-5)
        assert entry["labels"][0]["score"] >= entry["labels"][1]["score"]


def test_classify_text_lines(clips, capsys):
    from hubert_tf.cli import main

    assert main(["classify", clips[0], "--model", fixture_dir("cls"), "--top-k", "3"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(label.startswith("LABEL_") and 0 <= float(score) <= 1 for label, score in lines)
    assert main(["classify", *clips, "--model", fixture_dir("cls"), "--top-k", "1"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == clips  # file first


def test_classify_checks_its_arguments_before_loading_a_model(clips):
    code, out, err, no_tensorflow = without_tensorflow("classify", clips[0], "--model", "m", "--top-k", "0")
    assert code == 1 and err == ["hubert-tf: error: --top-k must be >= 1, got 0"] and no_tensorflow
