"""Dev-only: reference logits of the classification fixtures with hidden states in the transformers 4.x
convention, written to tests/fixtures/classification_4x/.

Why: transformers 5 records `hidden_states[-1]` of the pre-LN ("stable layer norm") encoder *before* its
final layer norm, so its `HubertForSequenceClassification` with `use_weighted_layer_sum` mixes that raw
output. transformers 4.x (and hubert_tf) use the layer-normed output (`hidden_states[-1] ==
last_hidden_state`). The logits in tests/fixtures/cls_weighted/reference.npz are the 5.x ones; this script
runs the same reference model with the final layer norm folded into the last encoder layer, so the
recorded hidden states are the 4.x ones (checked against the fixture's `batch_hidden_states_*`), and
records the reference head's logits and loss on them. For post-LN models both conventions agree.

Needs torch and transformers>=5 (the reference), never the test suite:

    /work/venvs/ref/bin/python tools/fixtures_classification.py
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch
import transformers

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures")
CASES = ("cls", "cls_weighted")
OUT = os.path.join(FIXTURES, "classification_4x")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def fold_final_layer_norm(model):
    """Pre-LN encoder: the last layer returns LN(output) and the encoder's own LN becomes the identity, so
    the recorded hidden states follow the 4.x convention and last_hidden_state is unchanged."""
    encoder = model.hubert.encoder
    if not model.config.do_stable_layer_norm:
        return
    last, layer_norm = encoder.layers[-1], encoder.layer_norm
    forward = last.forward

    def forward_with_norm(*args, **kwargs):
        out = forward(*args, **kwargs)
        return (layer_norm(out[0]),) + tuple(out[1:]) if isinstance(out, tuple) else layer_norm(out)

    last.forward = forward_with_norm
    encoder.layer_norm = torch.nn.Identity()


def main():
    os.makedirs(OUT, exist_ok=True)
    arrays, source = {}, {"transformers": transformers.__version__, "torch": torch.__version__, "cases": {}}
    for case in CASES:
        directory = os.path.join(FIXTURES, case)
        model = transformers.HubertForSequenceClassification.from_pretrained(directory).eval()
        fold_final_layer_norm(model)
        with np.load(os.path.join(directory, "reference.npz")) as data:
            ref = {k: data[k] for k in data.files}
        batch = dict(input_values=torch.from_numpy(ref["batch_input_values"]),
                     attention_mask=torch.from_numpy(ref["batch_attention_mask"]))
        single = dict(input_values=torch.from_numpy(ref["single_input_values"]))
        with torch.no_grad():
            out = model(**batch, labels=torch.from_numpy(ref["batch_labels"]), output_hidden_states=True)
            for i, h in enumerate(out.hidden_states):  # the 4.x hidden states, as recorded by make_fixtures
                diff = float(np.abs(h.numpy() - ref[f"batch_hidden_states_{i}"]).max())
                assert diff < 1e-4, f"{case}: hidden_states[{i}] differs from the 4.x fixture by {diff}"
            arrays[f"{case}/batch_logits"] = out.logits.numpy()
            arrays[f"{case}/batch_loss"] = np.float64(out.loss.item())
            arrays[f"{case}/single_logits"] = model(**single).logits.numpy()
        source["cases"][case] = {"model.safetensors sha256": sha256(os.path.join(directory, "model.safetensors"))}
        print(case, "4.x logits:", arrays[f"{case}/batch_logits"].tolist(), "loss", float(arrays[f"{case}/batch_loss"]))
    np.savez_compressed(os.path.join(OUT, "reference.npz"), **arrays)
    with open(os.path.join(OUT, "SOURCE.json"), "w") as f:
        json.dump(source, f, indent=2)


if __name__ == "__main__":
    main()
