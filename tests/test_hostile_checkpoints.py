"""Hostile checkpoints stay small and inside their directory, and saves never mix (issue 20).

Each file is crafted here from small numpy arrays and h5py, in tmp_path: safetensors headers declaring
absurd or huge unused tensors, tf_model.h5 datasets that would read other files (external storage,
external / soft links, a FIFO) or fill values (unwritten chunks), shards escaping through symlinks,
weights of the wrong dtype, concurrent saves and saves that crash between renames.
"""

import json
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest

from conftest import FIXTURES, assert_close, fixture_dir, reference
from hubert_tf import TFHubertForCTC
from hubert_tf.checkpoints import loading
from hubert_tf.checkpoints.formats.records import TensorRecord
from hubert_tf.checkpoints.formats.safetensors import read_safetensors


LEGACY = os.path.join(FIXTURES, "formats", "legacy_h5")
LM_BIAS_H5 = "lm_head/tf_hubert_for_ctc/lm_head/bias:0"


def base_dir(tmp_path, name="ckpt"):
    directory = tmp_path / name
    directory.mkdir()
    shutil.copy(os.path.join(fixture_dir("base_style"), "config.json"), directory)
    return directory


def base_state():
    return read_safetensors(os.path.join(fixture_dir("base_style"), "model.safetensors"))


def write_raw_safetensors(path, arrays, extra=(), extra_bytes=0, sparse=False):
    """`arrays` (F32/F64/C64/BOOL numpy arrays) plus hand-written header entries `extra`
    ((name, dtype code, shape, nbytes)) laid after them; `sparse` leaves their bytes unwritten."""
    codes = {"float32": "F32", "float64": "F64", "complex64": "C64", "bool": "BOOL"}
    header, offset, blobs = {}, 0, []
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": codes[array.dtype.name], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    for name, code, shape, nbytes in extra:
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for blob in blobs:
            f.write(blob)
        if sparse:
            f.truncate(f.tell() + extra_bytes)  # a hole: no disk blocks, reads as zeros
        else:
            f.write(b"\0" * extra_bytes)
    return path


def ref_logits(model):
    ref = reference("base_style")
    return model(ref["single_input_values"]).logits


# --- safetensors -----------------------------------------------------------------------------------


def test_zero_size_tensor_with_absurd_dims_is_refused_naming_the_file(tmp_path):
    directory = base_dir(tmp_path)
    write_raw_safetensors(directory / "model.safetensors", base_state(),
                          extra=[("junk", "F32", [0, 2**62, 2**62], 0)])
    with pytest.raises(ValueError, match=r"model\.safetensors.*'junk'.*absurd shape"):
        TFHubertForCTC.from_pretrained(directory)


def test_sparse_multi_gb_file_with_unused_bf16_tensor_loads_without_reading_it(tmp_path, caplog):
    directory = base_dir(tmp_path)
    elements = 2**31  # 4 GiB of BF16 (8 GiB once widened), a hole on disk
    path = write_raw_safetensors(directory / "model.safetensors", base_state(),
                                 extra=[("unused.bf16", "BF16", [elements], 2 * elements)],
                                 extra_bytes=2 * elements, sparse=True)
    assert os.path.getsize(path) > 4 * 10**9
    assert os.stat(path).st_blocks * 512 < 10 * 2**20  # the test itself uses little disk
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with caplog.at_level("WARNING", logger="hubert_tf"):
        model = TFHubertForCTC.from_pretrained(directory)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 300, f"peak RSS grew {grown_mib:.0f} MiB"
    assert "unused.bf16" in caplog.text
    assert_close(ref_logits(model), reference("base_style")["single_logits"], 1e-4, "sparse file")


def test_unused_tensors_are_never_read_and_shapes_are_checked_before_any_read(tmp_path):
    model = TFHubertForCTC.from_pretrained(fixture_dir("base_style"))
    records, path = loading.plan_checkpoint(fixture_dir("base_style"))
    reads = []

    def counting(record):
        def read():
            reads.append(record.name)
            return record.read()
        return TensorRecord(record.name, record.dtype, record.shape, record.nbytes, read=read, source=path)

    def exploding():
        raise AssertionError("an unused tensor was read")

    state = {key: counting(r) for key, r in records.items()}
    state["extra.weight"] = TensorRecord("extra.weight", np.dtype("float32"), (2**20, 2**20), 2**42, read=exploding)
    info = loading.load_state_dict_into(model, state, source=path)
    assert info["unused"] == ["extra.weight"] and len(reads) == len(records)

    reads.clear()
    wrong = dict(state, **{"lm_head.weight": TensorRecord("lm_head.weight", np.dtype("float32"), (13, 32), 13 * 128,
                                                          read=exploding)})
    before = model.lm_head.bias.numpy().copy()
    with pytest.raises(ValueError, match=r"lm_head\.weight.*\(13, 32\).*\(12, 32\)"):
        loading.load_state_dict_into(model, wrong, source=path)
    assert reads == []  # refused from the plan: nothing read, nothing assigned
    np.testing.assert_array_equal(model.lm_head.bias.numpy(), before)


def test_bytes_beyond_a_small_multiple_of_the_model_are_refused_before_reading():
    model = TFHubertForCTC.from_pretrained(fixture_dir("base_style"))
    records, path = loading.plan_checkpoint(fixture_dir("base_style"))
    key = "lm_head.weight"
    record = records[key]

    def exploding():
        raise AssertionError("read despite the byte cap")

    # A record whose bytes far exceed its shape (e.g. a view of a huge storage).
    records[key] = TensorRecord(key, record.dtype, record.shape, 2**34, read=exploding, source=path)
    with pytest.raises(ValueError, match=r"model\.safetensors.*more than 4x the model's own size"):
        loading.load_state_dict_into(model, records, source=path)


@pytest.mark.parametrize("dtype, value, message", [
    (np.complex64, 1 + 1j, "dtype complex64"),
    (np.bool_, True, "dtype bool"),
    (np.float64, 1e39, "beyond the range of float32"),
])
def test_weights_of_a_wrong_dtype_are_refused_naming_the_key(tmp_path, dtype, value, message):
    directory = base_dir(tmp_path)
    state = dict(base_state())
    state["lm_head.bias"] = np.full(state["lm_head.bias"].shape, value, dtype)
    write_raw_safetensors(directory / "model.safetensors", state)
    with pytest.raises(ValueError, match=rf"model\.safetensors.*lm_head\.bias.*{message}"):
        TFHubertForCTC.from_pretrained(directory)


def test_float64_weights_within_range_load_exactly(tmp_path):
    directory = base_dir(tmp_path)
    state = {k: v.astype(np.float64) for k, v in base_state().items()}
    write_raw_safetensors(directory / "model.safetensors", state)
    model = TFHubertForCTC.from_pretrained(directory)
    assert_close(ref_logits(model), reference("base_style")["single_logits"], 1e-4, "float64 checkpoint")


# --- tf_model.h5 -----------------------------------------------------------------------------------


def legacy_dir(tmp_path):
    directory = tmp_path / "legacy"
    directory.mkdir()
    for name in ("config.json", "tf_model.h5"):
        shutil.copy(os.path.join(LEGACY, name), directory)
    return directory


def replace_h5_bias(directory, **create):
    with h5py.File(directory / "tf_model.h5", "r+") as f:
        del f[LM_BIAS_H5]
        if "link" in create:
            f[LM_BIAS_H5] = create["link"]
        else:
            f.create_dataset(LM_BIAS_H5, **create)


def test_h5_external_storage_is_refused_before_reading_etc_passwd(tmp_path):
    directory = legacy_dir(tmp_path)
    replace_h5_bias(directory, shape=(12,), dtype="<f4", external=[("/etc/passwd", 0, 48)])
    with pytest.raises(ValueError, match=r"tf_model\.h5.*lm_head/bias:0.*external file '/etc/passwd'"):
        TFHubertForCTC.from_pretrained(directory)


@pytest.mark.parametrize("kind", ["external", "soft"])
def test_h5_links_to_elsewhere_are_refused(tmp_path, kind):
    directory = legacy_dir(tmp_path)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(12, dtype=np.float32)
    link = h5py.ExternalLink(str(other), "/data") if kind == "external" else \
        h5py.SoftLink("/lm_head/tf_hubert_for_ctc/lm_head/kernel:0")
    replace_h5_bias(directory, link=link)
    with pytest.raises(ValueError, match=rf"tf_model\.h5.*lm_head/bias:0.*{kind} link"):
        TFHubertForCTC.from_pretrained(directory)


def test_h5_external_storage_naming_a_fifo_does_not_hang(tmp_path):
    directory = legacy_dir(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    replace_h5_bias(directory, shape=(12,), dtype="<f4", external=[(str(fifo), 0, 48)])
    # In a child with a timeout, so a regression hangs that child, not the suite. The reader alone
    # (no TensorFlow) keeps it fast.
    code = ("import sys\nfrom hubert_tf.checkpoints.formats.legacy_h5 import read_legacy_tf_h5\n"
            "try:\n    read_legacy_tf_h5(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(directory / "tf_model.h5")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "external file" in done.stdout and "fifo" in done.stdout


def test_h5_unwritten_chunked_dataset_is_refused_without_filling_it(tmp_path):
    directory = legacy_dir(tmp_path)
    replace_h5_bias(directory, shape=(2**29,), dtype="<f4", chunks=(2**16,))  # 2 GiB of fill value
    assert os.path.getsize(directory / "tf_model.h5") < 200_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match=r"tf_model\.h5.*lm_head/bias:0.*0 of its 8192 chunks written"):
        TFHubertForCTC.from_pretrained(directory)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 300


def test_h5_shape_is_checked_before_reading(tmp_path):
    directory = legacy_dir(tmp_path)
    replace_h5_bias(directory, data=np.zeros(13, np.float32))
    with pytest.raises(ValueError, match=r"lm_head\.bias.*\(13,\).*\(12,\)"):
        TFHubertForCTC.from_pretrained(directory)


def test_h5_non_standard_filter_is_refused(tmp_path):
    directory = legacy_dir(tmp_path)
    replace_h5_bias(directory, data=np.zeros(12, np.float32), chunks=(12,), scaleoffset=0)
    with pytest.raises(ValueError, match=r"tf_model\.h5.*lm_head/bias:0.*filter 6"):
        TFHubertForCTC.from_pretrained(directory)


def write_global_heap_loop(directory):
    """Zero the header of the second object in the first HDF5 global heap collection (the heap
    holding the variable-length `layer_names` / `weight_names` strings). An object with index 0 and
    size 0 never advances libhdf5's collection parser (`H5HG__cache_heap_deserialize`): reading any
    string of that collection spins forever (what the fuzzer found as seed h5:tf_model.h5:670)."""
    path = directory / "tf_model.h5"
    data = bytearray(path.read_bytes())
    heap = data.index(b"GCOL")
    (size,) = struct.unpack_from("<Q", data, heap + 8)
    first = heap + 16
    (length,) = struct.unpack_from("<Q", data, first + 8)
    second = first + 16 + -(-length // 8) * 8  # objects are 8-byte aligned after a 16-byte header
    assert second + 16 <= heap + size and struct.unpack_from("<H", data, second)[0] == 2
    data[second : second + 16] = bytes(16)
    path.write_bytes(data)
    return path


def test_h5_metadata_on_which_libhdf5_spins_is_refused_within_the_limit(tmp_path, monkeypatch):
    from limited_child import run_limited

    from hubert_tf.checkpoints.formats import legacy_h5

    directory = legacy_dir(tmp_path)
    path = write_global_heap_loop(directory)
    monkeypatch.setattr(legacy_h5, "METADATA_SECONDS", 2.0)
    expected = f"{path}: HDF5 metadata could not be parsed within 2 s: corrupt file"
    # In a forked child first, so a regression fails here instead of hanging the suite.
    outcome = run_limited(legacy_h5.plan_legacy_tf_h5, str(path), cpu_seconds=10, wall_seconds=8)
    assert (outcome.status, outcome.error_type, outcome.message) == ("error", "ValueError", f"ValueError: {expected}")
    assert 2.0 <= outcome.seconds < 5.0, outcome
    # The same refusal through the loader (safe in this process now that it is known to return).
    with pytest.raises(ValueError, match=re.escape(expected)):
        TFHubertForCTC.from_pretrained(directory)


def test_h5_metadata_child_is_import_light_and_agrees_with_the_reader(tmp_path):
    from hubert_tf.checkpoints.formats import legacy_h5

    command = [sys.executable, "-X", "importtime", "-c", legacy_h5._CHILD_CODE, "--validate"]
    good = subprocess.run(command + [os.path.join(LEGACY, "tf_model.h5")], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert good.returncode == 0 and good.stdout.startswith("ok "), (good.stdout, good.stderr[-2000:])
    imported = {line.split("|")[-1].strip().split(".")[0] for line in good.stderr.splitlines() if "|" in line}
    assert {"numpy", "h5py", "hubert_tf"} <= imported and not imported & {"tensorflow", "keras", "torch"}, imported
    # A refusal in the child is the reader's own message, naming the file and the dataset.
    directory = legacy_dir(tmp_path)
    replace_h5_bias(directory, shape=(12,), dtype="<f4", external=[("/etc/passwd", 0, 48)])
    bad = subprocess.run(command[:1] + command[3:] + [str(directory / "tf_model.h5")], capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 1, bad.stderr
    assert re.fullmatch(r".*tf_model\.h5: dataset .*lm_head/bias:0.* external file '/etc/passwd'.*\n", bad.stdout)


def test_h5_metadata_child_dying_of_a_signal_is_a_value_error(monkeypatch):
    # A crash of libhdf5 in the child (stood in for by a child that kills itself) refuses the file.
    from hubert_tf.checkpoints.formats import legacy_h5

    path = os.path.join(LEGACY, "tf_model.h5")
    monkeypatch.setattr(legacy_h5, "_CHILD_CODE", "import os, resource, signal; resource.setrlimit("
                        "resource.RLIMIT_CORE, (0, 0)); os.kill(os.getpid(), signal.SIGSEGV)")  # fmt: skip
    expected = f"{path}: HDF5 metadata could not be parsed (the HDF5 library died of SIGSEGV): corrupt file"
    with pytest.raises(ValueError, match=re.escape(expected)):
        legacy_h5.plan_legacy_tf_h5(path)


# --- shards ----------------------------------------------------------------------------------------


def sharded_dir(tmp_path):
    directory = tmp_path / "sharded"
    TFHubertForCTC.from_pretrained(fixture_dir("base_style")).save_pretrained(directory, max_shard_size="50KB")
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    return directory, index, sorted(set(index["weight_map"].values()))


def test_shard_symlinked_to_a_file_elsewhere_is_refused(tmp_path):
    directory, _, shards = sharded_dir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(directory / shards[-1], elsewhere / shards[-1])
    os.symlink(elsewhere / shards[-1], directory / shards[-1])
    with pytest.raises(ValueError, match=r"index\.json.*outside the checkpoint directory"):
        TFHubertForCTC.from_pretrained(directory)


def test_shard_through_a_symlinked_subdirectory_is_refused(tmp_path):
    directory, index, shards = sharded_dir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(directory / shards[-1], elsewhere / shards[-1])
    os.symlink(elsewhere, directory / "sub")
    index["weight_map"] = {k: (f"sub/{v}" if v == shards[-1] else v) for k, v in index["weight_map"].items()}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"sub/.*outside the checkpoint directory"):
        TFHubertForCTC.from_pretrained(directory)


def test_shards_in_a_real_subdirectory_still_load(tmp_path):
    directory, index, shards = sharded_dir(tmp_path)
    (directory / "sub").mkdir()
    shutil.move(directory / shards[-1], directory / "sub" / shards[-1])
    index["weight_map"] = {k: (f"sub/{v}" if v == shards[-1] else v) for k, v in index["weight_map"].items()}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    model = TFHubertForCTC.from_pretrained(directory)
    assert_close(ref_logits(model), reference("base_style")["single_logits"], 1e-4, "subdirectory shards")


# --- saves never mix -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models():
    """Two models whose saves are told apart by config (`mask_time_prob`) and weights (lm_head.bias)."""
    a = TFHubertForCTC.from_pretrained(fixture_dir("base_style"), mask_time_prob=0.01)
    b = TFHubertForCTC.from_pretrained(fixture_dir("base_style"), mask_time_prob=0.02)
    b.lm_head.bias.assign(b.lm_head.bias.numpy() + 1.0)
    return {0.01: a, 0.02: b}


def assert_one_save(directory, models):
    """config.json and the weights in `directory` come from the same save."""
    config = json.loads((directory / "config.json").read_text())
    model = models[config["mask_time_prob"]]
    weights, _ = loading.read_state_dict(str(directory))  # the weight file loading would pick
    np.testing.assert_array_equal(weights["lm_head.bias"], model.lm_head.bias.numpy())


def test_concurrent_saves_into_one_directory_never_mix(tmp_path, monkeypatch, two_models):
    directory = tmp_path / "shared"
    replace = os.replace

    def slow_first_saver(src, dst):
        # Widen the race: thread "A" stalls before moving its weights into place.
        if threading.current_thread().name == "A" and os.path.basename(dst) == "model.safetensors":
            threading.Event().wait(0.3)
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", slow_first_saver)
    a, b = two_models[0.01], two_models[0.02]
    errors = []

    def save(model):
        try:
            model.save_pretrained(directory)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    first = threading.Thread(target=save, args=(a,), name="A")
    first.start()
    threading.Event().wait(0.05)
    second = threading.Thread(target=save, args=(b,), name="B")
    second.start()
    first.join(30)
    second.join(30)
    assert not errors
    assert_one_save(directory, two_models)
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors"]


def test_failed_rename_midway_rolls_the_previous_save_back(tmp_path, monkeypatch, two_models):
    directory = tmp_path / "ckpt"
    two_models[0.01].save_pretrained(directory)
    before = {f: (directory / f).read_bytes() for f in os.listdir(directory)}
    replace, calls = os.replace, []

    def fail_second(src, dst):
        # The second rename that puts a file under its final name in the checkpoint directory.
        if os.path.dirname(os.fspath(dst)) == str(directory) and not os.path.basename(dst).startswith("."):
            calls.append(dst)
            if len(calls) == 2:
                raise OSError("injected failure on the second rename")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_second)
    with pytest.raises(OSError, match="second rename"):
        two_models[0.02].save_pretrained(directory)
    assert {f: (directory / f).read_bytes() for f in os.listdir(directory)} == before


@pytest.mark.parametrize("sharded", [False, True])
@pytest.mark.parametrize("crash_at", range(1, 9))
def test_a_killed_save_never_leaves_a_mix_and_the_next_save_cleans_up(tmp_path, monkeypatch, two_models,
                                                                       crash_at, sharded):
    """A crash after `crash_at - 1` renames (nothing after it runs: no rollback, no clean-up), the
    second save replacing one model.safetensors by shards + index when `sharded`."""
    directory = tmp_path / "ckpt"
    two_models[0.01].save_pretrained(directory)
    shard_size = "50KB" if sharded else "5GB"
    replace, calls = os.replace, []

    class Killed(BaseException):
        pass

    def dying(src, dst):
        calls.append(dst)
        if len(calls) >= crash_at:
            raise Killed()
        return replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", dying)
        patch.setattr(os, "remove", lambda *a, **k: None)
        patch.setattr(shutil, "rmtree", lambda *a, **k: None)
        try:
            two_models[0.02].save_pretrained(directory, max_shard_size=shard_size)
        except Killed:
            pass
    if (directory / "config.json").exists():  # either it still loads as one save, or it does not load at all
        assert_one_save(directory, two_models)
    else:
        with pytest.raises(OSError, match="config.json"):
            TFHubertForCTC.from_pretrained(directory)
    two_models[0.02].save_pretrained(directory, max_shard_size=shard_size)
    visible = sorted(f for f in os.listdir(directory))
    assert all(not f.startswith(".") for f in visible), visible  # stale files gone
    assert ("model.safetensors" in visible) != sharded
    assert_one_save(directory, two_models)
    assert json.loads((directory / "config.json").read_text())["mask_time_prob"] == 0.02


def test_save_removes_old_temp_files_of_killed_saves_but_not_fresh_ones(tmp_path, two_models):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    old = directory / ".model.safetensors.0123456789ab.tmp"  # an older version's killed save
    fresh = directory / ".config.json.ba9876543210.tmp"      # e.g. a HubertConfig.save_pretrained in progress
    other = directory / ".vocab.json.0123456789ab.tmp"       # not a file a model save writes
    for path in (old, fresh, other):
        path.write_bytes(b"partial")
    os.utime(old, (0, 0))
    os.utime(other, (0, 0))
    (directory / ".hubert_tf-save-00000000abcd.tmp").mkdir()  # a killed save's staging directory
    two_models[0.01].save_pretrained(directory)
    assert sorted(os.listdir(directory)) == sorted([".config.json.ba9876543210.tmp", ".vocab.json.0123456789ab.tmp",
                                                    "config.json", "model.safetensors"])


def test_sharded_checkpoint_in_the_hub_cache_still_loads(tmp_path, monkeypatch):
    """Hub snapshots are symlinks into the repo's blobs/: inside the checkpoint for the real-path check."""
    directory, _, _ = sharded_dir(tmp_path)
    repo = tmp_path / "cache" / "models--facebook--hubert-sharded-test"
    snapshot, blobs = repo / "snapshots" / ("b" * 40), repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for i, name in enumerate(sorted(os.listdir(directory))):
        shutil.copy(directory / name, blobs / f"blob{i}")
        os.symlink(os.path.join("..", "..", "blobs", f"blob{i}"), snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = TFHubertForCTC.from_pretrained("facebook/hubert-sharded-test", cache_dir=str(tmp_path / "cache"))
    assert_close(ref_logits(model), reference("base_style")["single_logits"], 1e-4, "hub cache shards")
