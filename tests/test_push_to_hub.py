"""`push_to_hub` on models, processors, tokenizers and feature extractors: one commit of the
`save_pretrained` files through huggingface_hub's HfApi, checked without network by capturing the
prepared commit (HfApi's methods replaced) and loading its files back with `from_pretrained`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import harness
from conftest import PROCESSOR_FILES
from hubert_tf import HubertCTCTokenizer, HubertFeatureExtractor, HubertProcessor, TFHubertForCTC, hub

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """HfApi with create_repo / create_branch / create_commit recorded; each commit's files are copied
    (while `push_to_hub`'s temporary directory exists) into tmp_path/commit<N>."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import CommitInfo, RepoUrl

    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", repo_id, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        folder = tmp_path / f"commit{sum(c[0] == 'create_commit' for c in calls)}"
        for op in operations:
            target = folder / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(op.path_or_fileobj, target)
        calls.append(("create_commit", repo_id, {**kwargs, "files": sorted(op.path_in_repo for op in operations),
                                                 "folder": folder}))
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{'d' * 40}", commit_message="",
                          commit_description="", oid="d" * 40)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(hub, "hub_unreachable", lambda endpoint=None: None)  # as if online
    return calls


def processor():
    return HubertProcessor.from_pretrained(PROCESSOR_FILES)


def test_model_push_commits_config_and_weights_that_load_back(fake_hub):
    case = harness.CASES["TFHubertForCTC"]
    model = case.build()
    info = model.push_to_hub("me/tiny-ctc", commit_message="tiny model", private=True, token="hf_x",
                             revision="dev", create_pr=False)
    assert info.oid == "d" * 40
    assert [c[0] for c in fake_hub] == ["create_repo", "create_branch", "create_commit"]
    _, repo_id, repo_kwargs = fake_hub[0]
    assert repo_id == "me/tiny-ctc" and repo_kwargs["private"] is True and repo_kwargs["exist_ok"] is True
    assert repo_kwargs["token"] == "hf_x"
    assert fake_hub[1][2]["branch"] == "dev"
    commit = fake_hub[2][2]
    assert commit["files"] == ["config.json", "model.safetensors"]
    assert commit["commit_message"] == "tiny model" and commit["revision"] == "dev" and commit["create_pr"] is False
    inputs = case.inputs()
    loaded = TFHubertForCTC.from_pretrained(commit["folder"])
    np.testing.assert_allclose(np.asarray(loaded(inputs).logits), np.asarray(model(inputs).logits), atol=1e-6)


def test_model_push_as_pull_request_with_shards(fake_hub):
    model = harness.CASES["TFHubertForCTC"].build()
    model.push_to_hub("me/tiny-ctc", create_pr=True, max_shard_size="8KB")
    assert [c[0] for c in fake_hub] == ["create_repo", "create_commit"]  # no branch for a PR
    commit = fake_hub[1][2]
    assert commit["create_pr"] is True and commit["commit_message"] == "Upload TFHubertForCTC"
    assert "model.safetensors.index.json" in commit["files"] and len(commit["files"]) > 3
    assert isinstance(TFHubertForCTC.from_pretrained(commit["folder"]), TFHubertForCTC)


@pytest.mark.parametrize("part, files", [
    (lambda p: p, ["preprocessor_config.json", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]),
    (lambda p: p.tokenizer, ["special_tokens_map.json", "tokenizer_config.json", "vocab.json"]),
    (lambda p: p.feature_extractor, ["preprocessor_config.json"]),
])
def test_processor_parts_push_files_that_load_back(fake_hub, part, files):
    original = part(processor())
    original.push_to_hub("me/tiny-ctc", commit_message="processor")
    commit = fake_hub[-1][2]
    assert commit["files"] == files and commit["commit_message"] == "processor"
    folder = commit["folder"]
    if isinstance(original, HubertFeatureExtractor):
        assert HubertFeatureExtractor.from_pretrained(folder).to_dict() == original.to_dict()
        return
    tokenizer = original if isinstance(original, HubertCTCTokenizer) else original.tokenizer
    loaded = HubertCTCTokenizer.from_pretrained(folder)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    ids = tokenizer("HELLO WORLD").input_ids
    assert loaded.decode(ids, group_tokens=False) == tokenizer.decode(ids, group_tokens=False) == "HELLO WORLD"
    if isinstance(original, HubertProcessor):
        loaded = HubertProcessor.from_pretrained(folder)
        assert loaded.feature_extractor.to_dict() == original.feature_extractor.to_dict()


def test_processor_with_lm_pushes_its_language_model_folder(fake_hub, tmp_path):
    from hubert_tf.processing.processor_with_lm import HubertProcessorWithLM
    from test_decoding import ARPA

    lm = tmp_path / "tiny.arpa"
    lm.write_text(ARPA)
    HubertProcessorWithLM.from_processor(processor(), lm, beta=2.0).push_to_hub("me/tiny-lm")
    commit = fake_hub[-1][2]
    assert commit["files"] == ["language_model/attrs.json", "language_model/tiny.arpa", "language_model/unigrams.txt",
                               "preprocessor_config.json", "special_tokens_map.json", "tokenizer_config.json",
                               "vocab.json"]
    loaded = HubertProcessorWithLM.from_pretrained(commit["folder"])
    assert loaded.decoder_options["beta"] == 2.0
    assert (commit["folder"] / "language_model" / "tiny.arpa").read_text() == ARPA


def test_bad_repo_id_and_objects_are_refused_before_any_request(fake_hub):
    from hubert_tf.push import push_to_hub

    with pytest.raises(ValueError, match="'a/b/c' is not a hub repo id"):
        processor().push_to_hub("a/b/c")
    with pytest.raises(TypeError, match="dict has no save_pretrained"):
        push_to_hub({}, "me/x")
    assert fake_hub == []


def test_push_with_the_hub_unreachable_fails_fast_in_one_line(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from hubert_tf import HubertProcessor
        processor = HubertProcessor.from_pretrained(sys.argv[1])
        start = time.perf_counter()
        try:
            processor.push_to_hub("me/tiny")
        except OSError as error:
            print(f"error: {error}", file=sys.stderr)
        print(f"{time.perf_counter() - start:.3f}")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(PYTHONPATH=REPO, HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script, PROCESSOR_FILES], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: push_to_hub(me/tiny): the hub cannot"), \
        done.stderr
    assert float(done.stdout.split()[-1]) < 2.0
