"""Dev-only: writes the reference fixtures of the test suite into tests/fixtures/.

Needs torch and transformers>=5 (the PyTorch reference), never the test suite itself:

    python3 -m venv /work/venv-ref && /work/venv-ref/bin/pip install torch==2.13.0 "transformers>=5" numpy h5py safetensors
    /work/venv-ref/bin/python tools/make_fixtures.py                  # everything
    /work/venv-ref/bin/python tools/make_fixtures.py geometry_layer   # one case (names: CASES below)
    /work/venv-ref/bin/python tools/make_fixtures.py training_gradients pretraining

For every case it builds a tiny randomly initialised reference model (every weight random, norms and
batch-norm statistics included), saves it with `save_pretrained` (config.json + model.safetensors),
and records the reference outputs on a padded batch and on an unpadded single example in
`reference.npz`. Hidden states follow the transformers 4.x convention (the encoder input, then each
layer's output, the last entry equal to last_hidden_state), captured with hooks. The geometry_* cases
vary the conv stack (which feature-encoder branch each reaches: "covers" in their SOURCE.json). The
w2v_* cases are transformers' Wav2Vec2Model / Wav2Vec2ForCTC / Wav2Vec2ForSequenceClassification, and
w2v_mms adds MMS attention adapters with `adapter.<lang>.safetensors` files, a per-language vocab.json
and the reference's logits after `load_adapter("fra")`.

`training_gradients` records the CTC gradients of some cases in training mode (written to
tests/fixtures/training_gradients/, keyed by the sha256 of the case's checkpoint: rerun it after
regenerating one of those cases). `pretraining` runs tools/fixtures_pretraining.py (fairseq's HuBERT loss
in torch on a transformers body). The same seeds give the same bytes: regenerating an unchanged case
rewrites identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures")

TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=12,
    conv_dim=(16, 24, 32), conv_kernel=(10, 5, 4), conv_stride=(5, 4, 4),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
    final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.05,
)

CASES = {
    # name: (model class, config overrides)
    "base_style": ("HubertForCTC", dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False)),
    "large_style": ("HubertForCTC", dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
                                         ctc_loss_reduction="mean")),
    "batch_norm_pos": ("HubertForCTC", dict(conv_pos_batch_norm=True, feat_proj_layer_norm=False)),
    "odd_pos_kernel": ("HubertForCTC", dict(num_conv_pos_embeddings=15, hidden_act="relu", mask_time_prob=0.0)),
    "bare_large": ("HubertModel", dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)),
    "cls": ("HubertForSequenceClassification", dict(num_labels=5, classifier_proj_size=24)),
    "cls_weighted": ("HubertForSequenceClassification", dict(num_labels=3, classifier_proj_size=24,
                                                              use_weighted_layer_sum=True,
                                                              feat_extract_norm="layer", do_stable_layer_norm=True)),
    # Other conv geometries (the cases above share TINY's (10, 5, 4) / (5, 4, 4) stack, whose every layer
    # has kernel <= 2 * stride): each reaches branches of TFHubertConvLayer.call that stack never does.
    # Frames stay at 80 samples each, so the fixtures stay as small as the ones above.
    "geometry_group_bias": ("HubertForCTC", dict(
        conv_dim=(16, 24, 32), conv_kernel=(10, 6, 9), conv_stride=(5, 4, 4), conv_bias=True,
        feat_extract_norm="group", feat_extract_activation="relu")),
    "geometry_group_wide": ("HubertForCTC", dict(
        conv_dim=(16, 24, 32), conv_kernel=(21, 4, 3), conv_stride=(5, 4, 4), conv_bias=False,
        feat_extract_norm="group", feat_extract_activation="gelu_new", ctc_loss_reduction="mean")),
    "geometry_layer": ("HubertForCTC", dict(
        conv_dim=(16, 16, 24, 32), conv_kernel=(11, 3, 2, 2), conv_stride=(5, 2, 2, 4), conv_bias=True,
        feat_extract_norm="layer", do_stable_layer_norm=False, feat_extract_activation="silu")),
    # wav2vec 2.0 (transformers.Wav2Vec2*): the same layers under the `wav2vec2.` prefix, the feature
    # projection always layer-normed. base: group norm, post-LN; large / XLS-R: layer norm, pre-LN, bias.
    "w2v_base_style": ("Wav2Vec2ForCTC", dict(feat_extract_norm="group", do_stable_layer_norm=False,
                                              conv_bias=False)),
    "w2v_large_style": ("Wav2Vec2ForCTC", dict(feat_extract_norm="layer", do_stable_layer_norm=True,
                                               conv_bias=True, ctc_loss_reduction="mean")),
    "w2v_bare": ("Wav2Vec2Model", dict(feat_extract_norm="group", do_stable_layer_norm=False, mask_time_prob=0.0)),
    # Post-LN, where transformers 5's hidden states (mixed by the weighted layer sum) agree with the 4.x
    # convention hubert_tf follows (pre-LN: see tools/fixtures_classification.py).
    "w2v_cls": ("Wav2Vec2ForSequenceClassification", dict(num_labels=4, classifier_proj_size=24,
                                                          use_weighted_layer_sum=True, feat_extract_norm="layer",
                                                          do_stable_layer_norm=False, conv_bias=True)),
    # MMS: stable layer norm with per-language attention adapters; adapter.<lang>.safetensors for two
    # languages ("fra" with another vocabulary size) and the outputs with "fra" loaded.
    "w2v_mms": ("Wav2Vec2ForCTC", dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
                                       adapter_attn_dim=8)),
}
# The adapter languages of the MMS case: language -> vocabulary size (the first is the checkpoint's own).
MMS_LANGUAGES = {"eng": 12, "fra": 9}

# What each conv-geometry case covers in hubert_tf/modeling/feature_encoder.py (written to SOURCE.json).
COVERS = {
    "geometry_group_bias": [
        "layer 0 (k=10 <= 2*5, group norm, 1 input channel): the folded conv+group-norm branch with a conv "
        "bias (which cancels in the norm)",
        "layer 1 (k=6 <= 2*4, no norm): Conv1D in eval, the windowed matmul conv in training "
        "(conv_windows with stride < k), with bias",
        "layer 2 (k=9 > 2*4): the plain Conv1D branch, no norm, with bias",
        "feat_extract_activation relu",
    ],
    "geometry_group_wide": [
        "layer 0 (k=21 > 2*5, group norm): the plain Conv1D branch followed by TFHubertChannelNorm "
        "(not folded), no bias",
        "layer 1 (k=4 <= 4): conv_windows with k == stride in training; layer 2 (k=3 < 4): k < stride",
        "feat_extract_activation gelu_new (tanh approximation); ctc_loss_reduction mean",
    ],
    "geometry_layer": [
        "layer-norm conv stack (feat_extract_norm='layer') with conv bias and a post-LN encoder "
        "(do_stable_layer_norm=False)",
        "layer 0 (k=11 > 2*5): plain Conv1D + layer norm on the waveform",
        "layer 1 (k=3 <= 2*2): windowed conv with k > stride in training; layer 2 (k=2 == stride); "
        "layer 3 (k=2 < stride 4)",
        "four conv layers; feat_extract_activation silu",
    ],
}

# Sample lengths of the padded batch (the longest defines the padding) and of the single example.
BATCH_LENGTHS = (4000, 2650, 3203)
SINGLE_LENGTH = 3600


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter and buffer random (not the init's ones and zeros), so parity means something."""
    g = torch.Generator().manual_seed(seed)

    def randn(t):
        return torch.randn(t.shape, generator=g)

    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.BatchNorm1d)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, norms):
                module.weight.copy_(1.0 + 0.2 * randn(module.weight))
                module.bias.copy_(0.2 * randn(module.bias))
                if isinstance(module, torch.nn.BatchNorm1d):
                    module.running_mean.copy_(0.3 * randn(module.running_mean))
                    module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=g))
        for name, p in model.named_parameters():
            if any(name.startswith(n) for n, m in model.named_modules() if isinstance(m, norms) and n):
                continue
            if name.endswith(("original0", "weight_g")):  # weight-norm magnitude: around ||v||
                p.mul_(1.0 + 0.2 * torch.rand(p.shape, generator=g))
            elif p.ndim <= 1:
                p.copy_(0.5 * randn(p))
            else:
                p.copy_(1.5 * randn(p) / p[0].numel() ** 0.5)


def hidden_states_4x(model, base, inputs):
    """Runs `model` and returns (outputs, hidden_states in the 4.x convention)."""
    captured = []
    layers = base.encoder.layers
    hooks = [layers[0].register_forward_pre_hook(lambda m, args, kwargs: captured.append(args[0].detach().clone()),
                                                 with_kwargs=True)]
    for layer in layers:
        hooks.append(layer.register_forward_hook(lambda m, args, out: captured.append(
            (out[0] if isinstance(out, tuple) else out).detach().clone())))
    try:
        out = model(**inputs, output_attentions=True)
    finally:
        for h in hooks:
            h.remove()
    return out, captured


def make_batch(lengths, seed):
    rng = np.random.default_rng(seed)
    total = max(lengths)
    x = np.zeros((len(lengths), total), np.float32)
    mask = np.zeros((len(lengths), total), np.int32)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.standard_normal(n).astype(np.float32)
        mask[i, :n] = 1
    return x, mask


def make_labels(batch, vocab_size, seed, lengths=(5, 3, 7)):
    rng = np.random.default_rng(seed)
    labels = np.full((batch, max(lengths) + 2), -100, np.int64)
    for i in range(batch):
        n = lengths[i % len(lengths)]
        labels[i, :n] = rng.integers(1, vocab_size, n)
    labels[0, 1] = labels[0, 0]  # a repeated label needs a blank between
    return labels


def run_case(name, class_name, overrides, seed):
    torch.manual_seed(seed)
    wav2vec2 = class_name.startswith("Wav2Vec2")
    config = (transformers.Wav2Vec2Config if wav2vec2 else transformers.HubertConfig)(**{**TINY, **overrides})
    config._attn_implementation = "eager"
    model = getattr(transformers, class_name)(config).eval()
    randomize(model, seed)
    bare = class_name in ("HubertModel", "Wav2Vec2Model")
    base = model if bare else getattr(model, "wav2vec2" if wav2vec2 else "hubert")
    out_dir = os.path.join(FIXTURES, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir)
    arrays = {}
    x, mask = make_batch(BATCH_LENGTHS, seed + 1)
    single, _ = make_batch((SINGLE_LENGTH,), seed + 2)
    arrays["batch_input_values"], arrays["batch_attention_mask"] = x, mask
    arrays["single_input_values"] = single
    for tag, inputs in (("batch", dict(input_values=torch.from_numpy(x), attention_mask=torch.from_numpy(mask))),
                        ("single", dict(input_values=torch.from_numpy(single)))):
        with torch.no_grad():
            out, hidden = hidden_states_4x(model, base, inputs)
            if bare:
                last = out.last_hidden_state
            else:
                last = base(**inputs).last_hidden_state
                arrays[f"{tag}_logits"] = out.logits.numpy()
        hidden[-1] = last  # 4.x: the last entry is last_hidden_state (final LN applied for stable LN)
        arrays[f"{tag}_last_hidden_state"] = last.numpy()
        for i, h in enumerate(hidden):
            arrays[f"{tag}_hidden_states_{i}"] = h.numpy()
        for i, a in enumerate(out.attentions):
            arrays[f"{tag}_attentions_{i}"] = a.numpy()
    if config.mask_time_prob > 0:
        # An explicit mask_time_indices is applied in eval mode too (frames -> masked_spec_embed).
        frames = arrays["single_last_hidden_state"].shape[1]
        mask_time = np.random.default_rng(seed + 4).random((1, frames)) < 0.3
        arrays["single_mask_time_indices"] = mask_time
        with torch.no_grad():
            arrays["single_masked_last_hidden_state"] = base(
                input_values=torch.from_numpy(single), mask_time_indices=torch.from_numpy(mask_time)
            ).last_hidden_state.numpy()
    if class_name.endswith("ForCTC"):
        labels = make_labels(len(BATCH_LENGTHS), config.vocab_size, seed + 3)
        arrays["batch_labels"] = labels
        inputs = dict(input_values=torch.from_numpy(x), attention_mask=torch.from_numpy(mask),
                      labels=torch.from_numpy(labels))
        configured = config.ctc_loss_reduction  # `config` is `model.config`: keep it before the loop
        for reduction in ("sum", "mean"):
            model.config.ctc_loss_reduction = reduction
            with torch.no_grad():
                arrays[f"batch_loss_{reduction}"] = np.float64(model(**inputs).loss.item())
        # Gradients of the (configured-reduction) CTC loss w.r.t. every weight, for gradient parity.
        model.config.ctc_loss_reduction = configured
        arrays["grad_reduction"] = np.str_(configured)
        model.zero_grad()
        model(**inputs).loss.backward()
        for pname, p in model.named_parameters():
            if p.grad is not None:
                arrays[f"grad/{pname}"] = p.grad.numpy().copy()
        # Labels that cannot be aligned in the frames: inf, or 0 with ctc_zero_infinity.
        long_labels = np.ones((1, 400), np.int64)
        long_labels[0, ::2] = 2
        arrays["infeasible_labels"] = long_labels
        for zero in (False, True):
            model.config.ctc_zero_infinity = zero
            with torch.no_grad():
                arrays[f"infeasible_loss_zero_infinity_{int(zero)}"] = np.float64(model(
                    input_values=torch.from_numpy(single), labels=torch.from_numpy(long_labels)).loss.item())
        model.config.ctc_zero_infinity = False
    if class_name.endswith("ForSequenceClassification"):
        labels = np.arange(len(BATCH_LENGTHS)) % config.num_labels
        arrays["batch_labels"] = labels
        with torch.no_grad():
            out = model(input_values=torch.from_numpy(x), attention_mask=torch.from_numpy(mask),
                        labels=torch.from_numpy(labels))
        arrays["batch_loss"] = np.float64(out.loss.item())
    if getattr(config, "adapter_attn_dim", None) is not None:
        write_adapters(model, out_dir, arrays, x, mask, single, seed)
    np.savez_compressed(os.path.join(out_dir, "reference.npz"), **arrays)
    with open(os.path.join(out_dir, "SOURCE.json"), "w") as f:
        json.dump({"model_class": class_name, "transformers": transformers.__version__, "torch": torch.__version__,
                   "seed": seed, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
                   **({"covers": COVERS[name]} if name in COVERS else {})},
                  f, indent=2)
    print(f"{name}: {class_name} -> {out_dir} ({sum(a.nbytes for a in arrays.values() if hasattr(a, 'nbytes'))} bytes)")


def write_adapters(model, out_dir, arrays, x, mask, single, seed):
    """MMS: `adapter.<lang>.safetensors` (the attention adapters and the CTC head, the reference's
    `_get_adapters()` keys) for every language of MMS_LANGUAGES: the first holds the checkpoint's own
    weights, the others new random ones (and a head of their vocabulary size). Records the logits with
    the second language loaded by the reference's `load_adapter` into the saved checkpoint, and a
    `vocab.json` keyed by language."""
    from safetensors.torch import save_file

    languages = list(MMS_LANGUAGES)
    save_file({k: v.detach().contiguous() for k, v in model._get_adapters().items()},
              os.path.join(out_dir, f"adapter.{languages[0]}.safetensors"))
    g = torch.Generator().manual_seed(seed + 7)
    for i, lang in enumerate(languages[1:]):
        weights = {}
        for key, value in model._get_adapters().items():
            shape = list(value.shape)
            if key.startswith("lm_head."):
                shape[0] = MMS_LANGUAGES[lang]
            weights[key] = (1.0 + 0.2 * torch.randn(shape, generator=g) if key.endswith("norm.weight")
                            else 0.5 * torch.randn(shape, generator=g) / (shape[-1] ** 0.5 if len(shape) > 1 else 1))
        save_file(weights, os.path.join(out_dir, f"adapter.{lang}.safetensors"))
    other = languages[1]
    loaded = transformers.Wav2Vec2ForCTC.from_pretrained(out_dir, attn_implementation="eager").eval()
    loaded.load_adapter(other)
    with torch.no_grad():
        arrays[f"{other}_batch_logits"] = loaded(input_values=torch.from_numpy(x),
                                                 attention_mask=torch.from_numpy(mask)).logits.numpy()
        arrays[f"{other}_single_logits"] = loaded(input_values=torch.from_numpy(single)).logits.numpy()
    arrays["adapter_languages"] = np.array(languages)
    vocab = {}
    for lang, size in MMS_LANGUAGES.items():
        # MMS's layout: specials 0-3, the word delimiter "|" at 4, then the language's characters
        # (here a different set for each language, so decoding shows which vocabulary is in use).
        first = ord("a") if lang == languages[0] else ord("m")
        chars = [chr(first + i) for i in range(size - 5)]
        vocab[lang] = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate(chars)}}
    with open(os.path.join(out_dir, "vocab.json"), "w") as f:
        json.dump(vocab, f, indent=2)


# Cases whose CTC-loss gradients are also recorded in training mode (tests/fixtures/training_gradients/).
TRAINING_GRADIENT_CASES = ("base_style", "large_style", "batch_norm_pos", "geometry_group_bias",
                           "geometry_group_wide", "geometry_layer")


def sha256(path):
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_training_gradients(cases=TRAINING_GRADIENT_CASES):
    """d(CTC loss)/d(weight) in training mode (`model.train()`), deterministic: every dropout and layerdrop
    of the fixtures is 0 and `apply_spec_augment` is switched off for the call, so no time or feature mask
    is drawn although mask_time_prob > 0 (masked_spec_embed exists and gets no gradient). Training mode
    still changes the computation: batch norm uses the batch statistics (batch_norm_pos), and our feature
    encoder takes its matmul-form conv path. Written to tests/fixtures/training_gradients/<case>.npz, with
    the sha256 of the checkpoint it belongs to in SOURCE.json (the case fixtures themselves are untouched).
    """
    out_dir = os.path.join(FIXTURES, "training_gradients")
    os.makedirs(out_dir, exist_ok=True)
    source_path = os.path.join(out_dir, "SOURCE.json")
    source = {"cases": {}}
    if os.path.exists(source_path):
        with open(source_path) as f:
            source = json.load(f)
    for case in cases:
        src = os.path.join(FIXTURES, case)
        with np.load(os.path.join(src, "reference.npz")) as data:
            ref = {k: data[k] for k in ("batch_input_values", "batch_attention_mask", "batch_labels")}
        model = transformers.HubertForCTC.from_pretrained(src, attn_implementation="eager")
        config = model.config
        assert config.layerdrop == 0 and all(getattr(config, k) == 0 for k in (
            "hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout", "final_dropout"))
        config.apply_spec_augment = False  # no mask drawn in training
        model.train()
        model.zero_grad()
        loss = model(input_values=torch.from_numpy(ref["batch_input_values"]),
                     attention_mask=torch.from_numpy(ref["batch_attention_mask"]),
                     labels=torch.from_numpy(ref["batch_labels"])).loss
        loss.backward()
        arrays = {"loss": np.float64(loss.item()), "reduction": np.str_(config.ctc_loss_reduction)}
        for pname, p in model.named_parameters():
            if p.grad is not None:
                arrays[f"grad/{pname}"] = p.grad.numpy().copy()
        np.savez_compressed(os.path.join(out_dir, f"{case}.npz"), **arrays)
        source["cases"][case] = {"model.safetensors sha256": sha256(os.path.join(src, "model.safetensors")),
                                 "mode": "train(), apply_spec_augment=False, all dropout and layerdrop 0",
                                 "inputs": f"tests/fixtures/{case}/reference.npz batch_input_values, "
                                           "batch_attention_mask, batch_labels"}
        print(f"training_gradients/{case}: loss {loss.item():.6f} ({config.ctc_loss_reduction})")
    source.update(transformers=transformers.__version__, torch=torch.__version__)
    with open(source_path, "w") as f:
        json.dump(source, f, indent=2, sort_keys=True)


def write_format_variants():
    """The base_style checkpoint in the other formats hub repos use: sharded safetensors, a
    pytorch_model.bin with the old weight_g/weight_v names, a sharded bin, and a pretrained-only
    (HubertModel, no `hubert.` prefix) checkpoint."""
    src = os.path.join(FIXTURES, "base_style")
    model = transformers.HubertForCTC.from_pretrained(src).eval()
    root = os.path.join(FIXTURES, "checkpoint_formats")
    shutil.rmtree(root, ignore_errors=True)
    model.save_pretrained(os.path.join(root, "sharded_safetensors"), max_shard_size="60KB")
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    legacy = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                  "weight_v"): v for k, v in state.items()}
    for name, weights in (("legacy_bin", legacy), ("sharded_bin", state)):
        out = os.path.join(root, name)
        os.makedirs(out)
        shutil.copy(os.path.join(src, "config.json"), out)
        if name == "legacy_bin":
            torch.save(legacy, os.path.join(out, "pytorch_model.bin"))
            continue
        keys = list(weights)
        halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
        weight_map = {}
        for i, part in enumerate(halves):
            fname = f"pytorch_model-{i + 1:05d}-of-00002.bin"
            torch.save({k: weights[k] for k in part}, os.path.join(out, fname))
            weight_map.update({k: fname for k in part})
        total = sum(v.numel() * v.element_size() for v in weights.values())
        with open(os.path.join(out, "pytorch_model.bin.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    model.hubert.save_pretrained(os.path.join(root, "pretrained_only"))
    print(f"checkpoint_formats -> {root}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="cases to write (default: all)")
    args = parser.parse_args(argv)
    for i, (name, (class_name, overrides)) in enumerate(CASES.items()):
        if not args.cases or name in args.cases:
            run_case(name, class_name, overrides, seed=100 + 10 * i)
    if not args.cases or "checkpoint_formats" in args.cases:
        write_format_variants()
    if not args.cases or "training_gradients" in args.cases:
        write_training_gradients()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if not args.cases or "pretraining" in args.cases:
        __import__("fixtures_pretraining").main()
    # Processing and checkpoint-format fixtures live in their own scripts.
    for module in ("fixtures_processing", "fixtures_formats"):
        if not args.cases and os.path.exists(os.path.join(os.path.dirname(__file__), module + ".py")):
            __import__(module).main()


if __name__ == "__main__":
    main()
