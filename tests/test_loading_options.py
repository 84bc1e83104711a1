"""`from_pretrained` keywords behave as in transformers: typos are TypeErrors with a did-you-mean,
transformers' loading options are accepted and never reach the config, `output_loading_info`,
`subfolder`, `revision`, `cache_dir`, `force_download` work for models, configs and processors alike."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

import numpy as np
import pytest

import harness
from conftest import PROCESSOR_FILES
from hubert_tf import (HubertConfig, HubertCTCTokenizer, HubertFeatureExtractor, HubertProcessor, TFHubertForCTC,
                       TFHubertModel, hub, load_config)
from hubert_tf.checkpoints.loading import read_state_dict

ATOL = 1e-6  # same weights, same graph: outputs agree to float32 round-off


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny CTC model saved with the processor files; (directory, its logits on fixed audio)."""
    folder = tmp_path_factory.mktemp("tiny_ctc")
    model = harness.CASES["TFHubertForCTC"].build()
    model.save_pretrained(folder)
    for name in os.listdir(PROCESSOR_FILES):
        shutil.copy(os.path.join(PROCESSOR_FILES, name), folder)
    return str(folder), logits(model)


def logits(model):
    inputs = harness.CASES["TFHubertForCTC"].inputs()
    return np.asarray(model(inputs["input_values"], attention_mask=inputs["attention_mask"]).logits)


# ------------------------------------------------------------------------------------------ unknown keywords


@pytest.mark.parametrize("load, typo, hint", [
    (TFHubertForCTC.from_pretrained, "mask_time_porb", "mask_time_prob"),
    (HubertConfig.from_pretrained, "mask_time_porb", "mask_time_prob"),
    (load_config, "hiden_size", "hidden_size"),
    (TFHubertForCTC.from_pretrained, "output_loading_infos", "output_loading_info"),
    (TFHubertForCTC.from_pretrained, "revison", "revision"),
    (HubertFeatureExtractor.from_pretrained, "do_normalise", "do_normalize"),
    (HubertCTCTokenizer.from_pretrained, "word_delimeter_token", "word_delimiter_token"),
    (HubertProcessor.from_pretrained, "do_normalise", "do_normalize"),
    (HubertProcessor.from_pretrained, "word_delimeter_token", "word_delimiter_token"),
])
def test_unknown_keyword_is_a_type_error_with_did_you_mean(saved, load, typo, hint):
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{typo}' .*; did you mean {hint}\?$"):
        load(saved[0], **{typo: 0.1})


def test_several_unknown_keywords_are_all_named(saved):
    with pytest.raises(TypeError, match=r"arguments 'foo', 'mask_time_porb' \(did you mean mask_time_prob\?\)"):
        TFHubertForCTC.from_pretrained(saved[0], foo=1, mask_time_porb=0.1)


def test_config_fields_file_extras_and_generic_keys_are_overrides(saved, tmp_path):
    config, unused = HubertConfig.from_pretrained(saved[0], mask_time_prob=0.0, output_hidden_states=True,
                                                  return_unused_kwargs=True)
    assert unused == {}
    assert config.mask_time_prob == 0.0 and config.output_hidden_states is True
    data = json.load(open(os.path.join(saved[0], "config.json")))
    data["my_extra"] = 1  # a key of the file (a field of some other version): overridable too
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert HubertConfig.from_pretrained(tmp_path, my_extra=2).my_extra == 2
    model = TFHubertForCTC.from_pretrained(saved[0], vocab_size=20, ignore_mismatched_sizes=True)
    assert model.config.vocab_size == 20 and model.lm_head.kernel.shape[-1] == 20


# ------------------------------------------------------------------------------------------ transformers' options

IGNORED = dict(from_pt=True, from_tf=False, from_flax=False, trust_remote_code=True, low_cpu_mem_usage=True,
               device_map="auto", torch_dtype="auto", use_safetensors=None, resume_download=True,
               proxies={"https": "proxy:1"}, local_files_only=True, _from_auto=True, _from_pipeline="asr",
               attn_implementation="eager", weights_only=True, offload_folder="x", use_auth_token=None, mirror=None)


def test_transformers_options_are_accepted_and_never_reach_the_config(saved, tmp_path):
    folder, expected = saved
    model = TFHubertForCTC.from_pretrained(folder, **IGNORED)
    np.testing.assert_allclose(logits(model), expected, atol=ATOL)
    model.save_pretrained(tmp_path)
    written = json.load(open(tmp_path / "config.json"))
    assert not set(IGNORED) & set(written), set(IGNORED) & set(written)
    config = HubertConfig.from_pretrained(folder, **IGNORED, output_loading_info=True)
    assert not set(IGNORED) & set(config.to_dict())
    processor = HubertProcessor.from_pretrained(folder, **IGNORED)
    assert not set(IGNORED) & set(processor.feature_extractor.to_dict())
    assert not set(IGNORED) & set(processor.tokenizer.extra_config)


def test_options_that_would_load_another_model_are_refused(saved):
    with pytest.raises(ValueError, match="quantization_config= is not supported"):
        TFHubertForCTC.from_pretrained(saved[0], quantization_config={"load_in_8bit": True})


def test_the_table_covers_transformers_from_pretrained():
    """Every keyword transformers' `PreTrainedModel.from_pretrained` pops is in the one table (read from
    the reference environment's source; skipped where it is absent)."""
    found = glob.glob("/work/venv-ref/lib/python*/site-packages/transformers/modeling_utils.py")
    if not found:
        pytest.skip("no transformers source in /work/venv-ref")
    source = open(found[0]).read()
    start = source.index("    def from_pretrained(")
    body = source[start:source.index("\n    def ", start + 10)]
    signature = body[:body.index(") ->")]
    names = set(re.findall(r"^\s+(\w+):", signature, re.M)) | set(re.findall(r'kwargs\.pop\("(\w+)"', body))
    for listed in re.findall(r"for name in \[([^\]]*)\]", body):  # "Not used anymore" names
        names |= set(re.findall(r'"(\w+)"', listed))
    names -= {"cls", "pretrained_model_name_or_path"}
    assert len(names) > 30, names
    assert names - set(hub.LOADING_OPTIONS) == set()


def test_dtype_torch_dtype_and_state_dict(saved, tmp_path):
    folder, expected = saved
    assert TFHubertForCTC.from_pretrained(folder, torch_dtype="bfloat16").dtype_policy.name == "bfloat16"
    assert TFHubertForCTC.from_pretrained(folder, torch_dtype="auto").dtype_policy.name == "float32"
    state, _ = read_state_dict(folder)
    model = TFHubertForCTC.from_pretrained(folder, state_dict=state)
    np.testing.assert_allclose(logits(model), expected, atol=ATOL)
    state = {k: (v + 1 if k == "lm_head.bias" else v) for k, v in state.items()}  # the given weights are used
    np.testing.assert_allclose(logits(TFHubertForCTC.from_pretrained(folder, state_dict=state)), expected + 1,
                               atol=1e-5)


def test_use_safetensors_variant_and_config_path(saved, tmp_path):
    folder, expected = saved
    shutil.copy(os.path.join(folder, "config.json"), tmp_path)
    shutil.copy(os.path.join(folder, "model.safetensors"), tmp_path / "model.fp16.safetensors")
    with pytest.raises(OSError, match=r"no weights found .*looked for model\.safetensors, "):
        TFHubertForCTC.from_pretrained(tmp_path)
    np.testing.assert_allclose(logits(TFHubertForCTC.from_pretrained(tmp_path, variant="fp16")), expected, atol=ATOL)
    with pytest.raises(OSError, match=r"looked for tf_model\.fp16\.h5, pytorch_model\.fp16\.bin"):
        TFHubertForCTC.from_pretrained(tmp_path, variant="fp16", use_safetensors=False)
    with pytest.raises(ValueError, match="variant must be"):
        TFHubertForCTC.from_pretrained(tmp_path, variant="../x")
    other = HubertConfig.from_pretrained(folder, mask_time_prob=0.0)
    other.save_pretrained(tmp_path / "cfg")
    model = TFHubertForCTC.from_pretrained(tmp_path, variant="fp16", config=str(tmp_path / "cfg"))
    assert model.config.mask_time_prob == 0.0


# ------------------------------------------------------------------------------------------ output_loading_info


def test_output_loading_info_lists_missing_unexpected_and_mismatched(saved, tmp_path):
    folder, _ = saved
    bare = tmp_path / "bare"
    TFHubertModel(HubertConfig(**harness.TINY)).save_pretrained(bare)
    model, info = TFHubertForCTC.from_pretrained(bare, output_loading_info=True)
    assert isinstance(model, TFHubertForCTC)
    assert set(info) == {"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"}
    assert info["missing_keys"] == {"lm_head.weight", "lm_head.bias"} and not info["unexpected_keys"]
    model, info = TFHubertModel.from_pretrained(folder, output_loading_info=True)
    assert info["unexpected_keys"] == {"lm_head.weight", "lm_head.bias"} and not info["missing_keys"]
    _, info = TFHubertForCTC.from_pretrained(folder, vocab_size=20, ignore_mismatched_sizes=True,
                                             output_loading_info=True)
    assert info["mismatched_keys"] == {("lm_head.weight", (12, 16), (20, 16)), ("lm_head.bias", (12,), (20,))}
    assert info["error_msgs"] == [] and not info["missing_keys"]
    assert isinstance(TFHubertForCTC.from_pretrained(folder, output_loading_info=False), TFHubertForCTC)


# ------------------------------------------------------------------------------------------ subfolder, hub options


def test_subfolder_of_a_local_directory(saved, tmp_path):
    folder, expected = saved
    shutil.copytree(folder, tmp_path / "inner")
    model = TFHubertForCTC.from_pretrained(tmp_path, subfolder="inner")
    np.testing.assert_allclose(logits(model), expected, atol=ATOL)
    assert model.name_or_path == str(tmp_path / "inner")
    assert HubertConfig.from_pretrained(tmp_path, subfolder="inner").vocab_size == 12
    assert HubertProcessor.from_pretrained(tmp_path, subfolder="inner").decode([5, 5, 0, 6]) == \
        HubertProcessor.from_pretrained(folder).decode([5, 5, 0, 6])
    with pytest.raises(OSError, match="no such directory: .*missing"):
        TFHubertForCTC.from_pretrained(tmp_path, subfolder="missing")


def _cache_repo(cache, repo_id, source, revision, commit, subfolder):
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(source, folder / "snapshots" / commit / subfolder)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / revision).write_text(commit)


def test_hub_revision_subfolder_and_cache_dir_from_the_cache(saved, tmp_path, monkeypatch):
    folder, expected = saved
    _cache_repo(tmp_path, "someone/tiny", folder, "v1", "c" * 40, "sub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_kwargs = dict(revision="v1", subfolder="sub", cache_dir=str(tmp_path))
    model = TFHubertForCTC.from_pretrained("someone/tiny", **hub_kwargs)
    np.testing.assert_allclose(logits(model), expected, atol=ATOL)
    assert HubertConfig.from_pretrained("someone/tiny", **hub_kwargs).vocab_size == 12
    assert HubertProcessor.from_pretrained("someone/tiny", **hub_kwargs).tokenizer.vocab_size == 32
    with pytest.raises(OSError, match="config.json of someone/tiny is not in the local hub cache"):
        HubertConfig.from_pretrained("someone/tiny", revision="v1", cache_dir=str(tmp_path))  # no subfolder
    with pytest.raises(OSError, match="sub/config.json of someone/tiny is not in the local hub cache"):
        TFHubertForCTC.from_pretrained("someone/tiny", revision="v2", subfolder="sub", cache_dir=str(tmp_path))


def test_hub_options_reach_huggingface_hub(saved, tmp_path, monkeypatch):
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        path = os.path.join(saved[0], filename)
        if not os.path.isfile(path):
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(filename)
        return path

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "hub_unreachable", lambda endpoint=None: None)  # as if online
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # conftest's default
    options = dict(revision="r1", cache_dir=str(tmp_path), force_download=True, token="t", subfolder="s")
    for load in (TFHubertForCTC.from_pretrained, HubertConfig.from_pretrained, HubertProcessor.from_pretrained):
        calls.clear()
        load("someone/tiny", **options)
        assert calls, load
        for repo_id, _, kwargs in calls:
            assert repo_id == "someone/tiny"
            assert {k: kwargs[k] for k in options} == options, kwargs
            assert kwargs["local_files_only"] is False
    files = {c[1] for c in calls}
    assert {"preprocessor_config.json", "vocab.json", "tokenizer_config.json"} <= files


def test_processor_with_lm_routes_component_and_decoder_options(tmp_path):
    from hubert_tf.processing.processor_with_lm import HubertProcessorWithLM
    from test_decoding import ARPA, VOCAB

    lm = tmp_path / "tiny.arpa"
    lm.write_text(ARPA)
    base = HubertProcessor(HubertFeatureExtractor(), HubertCTCTokenizer(VOCAB))
    HubertProcessorWithLM.from_processor(base, lm, alpha=0.25).save_pretrained(tmp_path / "repo" / "inner")
    loaded = HubertProcessorWithLM.from_pretrained(tmp_path / "repo", subfolder="inner", beam_width=7,
                                                   do_normalize=False, word_delimiter_token="|", from_pt=True)
    assert loaded.decoder_options == {"alpha": 0.25, "beta": 1.5, "unk_score_offset": -10.0,
                                      "score_boundary": True, "beam_width": 7}
    assert loaded.feature_extractor.do_normalize is False
    with pytest.raises(TypeError, match="'beam_widht' .*did you mean beam_width"):
        HubertProcessorWithLM.from_pretrained(tmp_path / "repo", subfolder="inner", beam_widht=7)
