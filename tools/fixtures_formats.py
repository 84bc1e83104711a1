"""Regenerate the small checkpoint-format fixtures under ``tests/fixtures/formats/``.

Dev-only: the test suite never runs this script and never needs torch, TensorFlow or
transformers. The fixtures are committed; rerun this only to change them.

Two interpreters are needed because no single environment can write every format:

* ``--ref-python`` (torch, default ``/work/venvs/ref/bin/python``) writes
  ``torch_pickle/``: the same state dict saved with ``torch.save`` in the zip format and in
  the legacy (pre-1.6) pickle-stream format, plus ``expected.npz`` with the values.
* ``--legacy-python`` (transformers<4.58 with its TF classes, tf-keras, tensorflow, torch;
  default ``/work/venvs/legacy/bin/python``) writes ``legacy_h5/``: a tiny random
  ``HubertForCTC`` saved by PyTorch (``pytorch_model.bin``, ``model.safetensors``,
  ``pytorch_model_state.npz``) and the same weights converted by ``TFHubertForCTC`` into a
  genuine Keras-2 ``tf_model.h5``, with ``config.json`` and ``reference_logits.npz``.

Usage::

    python tools/fixtures_formats.py                 # both stages, each in its interpreter
    python tools/fixtures_formats.py --stage torch   # one stage in *this* interpreter
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "formats")

# The tiny HuBERT used for the legacy h5 fixture: small enough to commit, yet every kind of
# weight (feature-encoder convs + group norm, projection, weight-normed positional conv,
# attention, feed-forward, CTC head) is present.
TINY_HUBERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    conv_dim=(16, 16),
    conv_kernel=(10, 3),
    conv_stride=(5, 2),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    vocab_size=12,
)


def _torch_stage(out_dir):
    """Write ``torch_pickle/``: one state dict covering dtypes, views and odd layouts."""
    import torch

    torch.manual_seed(0)
    base = torch.randn(4, 3)
    state = collections.OrderedDict()
    state["encoder.weight"] = base
    state["encoder.weight_t"] = base.t()  # shares storage, transposed strides
    state["encoder.rows"] = base[1:]  # shares storage, storage offset 3
    state["encoder.column"] = base[:, 1]  # shares storage, stride 3
    state["expanded"] = torch.randn(1, 3).expand(4, 3)  # zero stride
    state["half"] = torch.randn(5).half()
    state["bf16"] = torch.randn(2, 3).bfloat16()
    state["double"] = torch.randn(2).double()
    state["long"] = torch.tensor([1, -2, 2**40], dtype=torch.int64)
    state["int"] = torch.tensor([[1, 2], [3, -4]], dtype=torch.int32)
    state["short"] = torch.tensor([7, -7], dtype=torch.int16)
    state["int8"] = torch.tensor([-128, 127], dtype=torch.int8)
    state["uint8"] = torch.tensor([0, 255], dtype=torch.uint8)
    state["bool"] = torch.tensor([True, False, True])
    state["complex"] = torch.randn(2, dtype=torch.complex64)
    state["scalar"] = torch.tensor(3.5)
    state["empty"] = torch.zeros(0, 3)
    state["param"] = torch.nn.Parameter(torch.randn(2, 2))
    # transformers' state dicts carry this attribute; it is pickled through BUILD.
    state._metadata = collections.OrderedDict([("", {"version": 1}), ("encoder", {"version": 1})])

    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # torch names the zip's top-level folder after the file; save under another name so
        # the reader is tested on a folder name that differs from the file name.
        tmp_path = os.path.join(tmp, "some_other_archive.bin")
        torch.save(state, tmp_path)
        shutil.copyfile(tmp_path, os.path.join(out_dir, "state_zip.bin"))
    torch.save(state, os.path.join(out_dir, "state_legacy.bin"), _use_new_zipfile_serialization=False)

    expected = {}
    for name, tensor in state.items():
        tensor = tensor.detach()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()  # our readers return bfloat16 as float32 by default
        expected[name] = tensor.contiguous().numpy()
    np.savez(os.path.join(out_dir, "expected.npz"), **expected)


def _legacy_h5_stage(out_dir):
    """Write ``legacy_h5/``: a tiny HubertForCTC in torch and as a genuine ``tf_model.h5``."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.HubertConfig(**TINY_HUBERT)
    model = transformers.HubertForCTC(config).eval()
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pt_dir = os.path.join(tmp, "pt")
        model.save_pretrained(pt_dir)  # model.safetensors
        model.save_pretrained(pt_dir, safe_serialization=False)  # pytorch_model.bin
        tf_model = transformers.TFHubertForCTC.from_pretrained(pt_dir, from_pt=True)
        tf_dir = os.path.join(tmp, "tf")
        tf_model.save_pretrained(tf_dir)
        for src, name in [
            (os.path.join(pt_dir, "config.json"), "config.json"),
            (os.path.join(pt_dir, "model.safetensors"), "model.safetensors"),
            (os.path.join(pt_dir, "pytorch_model.bin"), "pytorch_model.bin"),
            (os.path.join(tf_dir, "tf_model.h5"), "tf_model.h5"),
        ]:
            shutil.copyfile(src, os.path.join(out_dir, name))

    state = {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}
    np.savez(os.path.join(out_dir, "pytorch_model_state.npz"), **state)

    # Outputs of both reference implementations on one waveform, for parity tests.
    rng = np.random.default_rng(0)
    input_values = rng.standard_normal((2, 1600)).astype(np.float32)
    with torch.no_grad():
        pt_logits = model(torch.from_numpy(input_values)).logits.numpy()
    tf_logits = tf_model(input_values).logits.numpy()
    np.savez(
        os.path.join(out_dir, "reference_logits.npz"),
        input_values=input_values,
        pt_logits=pt_logits,
        tf_logits=tf_logits,
    )
    with open(os.path.join(out_dir, "versions.json"), "w", encoding="utf-8") as f:
        import tensorflow as tf

        json.dump(
            {"torch": torch.__version__, "transformers": transformers.__version__, "tensorflow": tf.__version__},
            f,
            indent=2,
        )
        f.write("\n")


STAGES = {
    "torch": (_torch_stage, "torch_pickle", "--ref-python"),
    "legacy-h5": (_legacy_h5_stage, "legacy_h5", "--legacy-python"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=sorted(STAGES), help="run one stage in this interpreter")
    parser.add_argument("--ref-python", default="/work/venvs/ref/bin/python")
    parser.add_argument("--legacy-python", default="/work/venvs/legacy/bin/python")
    args = parser.parse_args(argv)

    if args.stage:
        stage, folder, _ = STAGES[args.stage]
        stage(os.path.join(FIXTURES, folder))
        print(f"wrote {os.path.join(FIXTURES, folder)}")
        return 0
    for name, (_, _, option) in STAGES.items():
        python = getattr(args, option.lstrip("-").replace("-", "_"))
        subprocess.run([python, os.path.abspath(__file__), "--stage", name], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
