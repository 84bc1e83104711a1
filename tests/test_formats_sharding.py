"""Sharded checkpoints (index files, splitting, names) and crash-safe saving (atomic writes)."""

import json
import os
import stat

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubert_tf.files import atomic_files, atomic_write
from hubert_tf.checkpoints.formats import (
    index_to_json,
    parse_size,
    read_index,
    read_safetensors,
    split_into_shards,
    split_state_dict,
    write_index,
    write_safetensors,
)

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def nbytes_state(*sizes):
    return {f"t{i}": np.zeros(size, np.uint8) for i, size in enumerate(sizes)}


# --- sizes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, expected",
    [
        (123, 123),
        ("5GB", 5 * 10**9),
        ("5GiB", 5 * 2**30),
        ("500MB", 500 * 10**6),
        ("500MiB", 500 * 2**20),
        ("10KB", 10_000),
        ("10kib", 10_240),
        ("2TB", 2 * 10**12),
        ("8Mb", 10**6),  # transformers: a lowercase b means bits
        ("0.5GB", 500_000_000),
        (" 7 MB ", 7_000_000),
    ],
)
def test_parse_size(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["5", "GB", "5 PB", "-5GB", "5GBs", "0MB", 0, -1, 1.5, True, None])
def test_parse_size_rejects(size):
    with pytest.raises(ValueError):
        parse_size(size)


def test_parse_size_agrees_with_transformers():
    hub = pytest.importorskip("transformers.utils.hub")
    for size in ["5GB", "5GiB", "500MB", "500MiB", "10KB", "10KiB", "8Mb", "8Gb", "3kb"]:
        assert parse_size(size) == hub.convert_file_size_to_int(size), size


# --- splitting ------------------------------------------------------------------------------------


def test_split_follows_the_hub_algorithm():
    # The example from huggingface_hub's docstring: limit 10, sizes 6 6 2 6 2 2.
    shards = split_into_shards(nbytes_state(6, 6, 2, 6, 2, 2), 10)
    assert [list(s) for s in shards] == [["t0"], ["t1", "t2"], ["t3", "t4", "t5"]]


def test_oversized_tensor_gets_its_own_shard_and_order_is_kept():
    # The oversized tensor goes out at once, ahead of the shard being filled (as the hub does).
    shards = split_into_shards(nbytes_state(3, 50, 3, 3), 8)
    assert [list(s) for s in shards] == [["t1"], ["t0", "t2"], ["t3"]]


def test_split_small_and_empty():
    assert [list(s) for s in split_into_shards(nbytes_state(1, 2, 3))] == [["t0", "t1", "t2"]]
    assert split_into_shards({}) == [{}]


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), max_size=20), limit=st.integers(1, 50))
def test_split_matches_huggingface_hub(sizes, limit):
    serialization = pytest.importorskip("huggingface_hub.serialization")
    state = nbytes_state(*sizes)
    ours = split_into_shards(state, limit)
    theirs = serialization.split_state_dict_into_shards_factory(
        state, get_storage_size=lambda t: t.nbytes, filename_pattern="model{suffix}.safetensors", max_shard_size=limit
    )
    assert [list(shard) for shard in ours if shard] == list(theirs.filename_to_tensors.values())
    shards, index = split_state_dict(state, limit)
    assert [name for name, _ in shards] == (list(theirs.filename_to_tensors) or ["model.safetensors"])
    if index is not None:
        assert index == {"metadata": theirs.metadata, "weight_map": theirs.tensor_to_filename}


# --- names and the index file ----------------------------------------------------------------------


def test_shard_names_follow_transformers():
    names = lambda shards: [name for name, _ in shards]  # noqa: E731
    assert names(split_state_dict(nbytes_state(1, 2), 10)[0]) == ["model.safetensors"]
    assert names(split_state_dict(nbytes_state(4, 4, 4), 4)[0]) == [
        f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert names(split_state_dict(nbytes_state(4, 4), 4, "pytorch_model{suffix}.bin")[0])[1] == \
        "pytorch_model-00002-of-00002.bin"
    assert split_state_dict({}) == ([("model.safetensors", {})], None)


def test_index_is_written_like_transformers(tmp_path):
    _, index = split_state_dict({"b": np.zeros(3, np.float32), "a": np.zeros(2, np.float32)}, 12)
    assert index == {
        "metadata": {"total_size": 20},
        "weight_map": {"b": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"},
    }
    text = index_to_json({**index, "metadata": {**index["metadata"], "total_parameters": 5}})
    assert text == json.dumps(
        {"metadata": {"total_parameters": 5, "total_size": 20},
         "weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}},
        indent=2, sort_keys=True,
    ) + "\n"  # fmt: skip
    assert text.startswith('{\n  "metadata": {\n    "total_parameters": 5,')


def test_sharded_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    state = {f"layer.{i}.weight": rng.standard_normal((8, 8)).astype(np.float32) for i in range(5)}
    shards, index = split_state_dict(state, 600)  # two 256-byte tensors per shard
    names = [name for name, _ in shards]
    assert len(shards) == 3
    with atomic_files(tmp_path) as files:
        for name, shard in shards:
            write_safetensors(files.path(name), shard)
        write_index(files.path("model.safetensors.index.json"), index)
    weight_map, metadata = read_index(tmp_path / "model.safetensors.index.json")
    assert metadata == {"total_size": 5 * 256}
    loaded = {}
    for shard in sorted(set(weight_map.values())):
        loaded.update(read_safetensors(tmp_path / shard))
    assert set(loaded) == set(state)
    for name in state:
        np.testing.assert_array_equal(loaded[name], state[name])
    assert sorted(os.listdir(tmp_path)) == sorted(names + ["model.safetensors.index.json"])


def write_index_json(folder, weight_map, shards=()):
    for shard in shards:
        (folder / shard).write_bytes(b"")
    path = folder / "model.safetensors.index.json"
    path.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return str(path)


@pytest.mark.parametrize(
    "shard, problem",
    [
        ("/etc/passwd", "absolute path"),
        ("C:\\Windows\\system.ini", "absolute path"),
        ("\\\\server\\share\\x", "absolute path"),
        ("../outside.safetensors", "contains '..'"),
        ("sub/../../outside.safetensors", "contains '..'"),
        ("..\\outside.safetensors", "contains '..'"),
        ("", "empty"),
        (".", "outside the index's directory"),
        ("a\x00b", "NUL"),
    ],
)
def test_read_index_refuses_escaping_shard_names(tmp_path, shard, problem):
    path = write_index_json(tmp_path, {"good": "model.safetensors", "evil.weight": shard}, ["model.safetensors"])
    with pytest.raises(ValueError) as info:
        read_index(path)
    message = str(info.value)
    assert message.startswith(path) and "'evil.weight'" in message and problem in message


def test_read_index_lists_every_missing_shard(tmp_path):
    path = write_index_json(tmp_path, {"a": "one.safetensors", "b": "two.safetensors", "c": "three.safetensors"},
                            ["two.safetensors"])  # fmt: skip
    with pytest.raises(FileNotFoundError) as info:
        read_index(path)
    assert str(info.value).startswith(path)
    assert "one.safetensors" in str(info.value) and "three.safetensors" in str(info.value)
    assert "two.safetensors" not in str(info.value)
    weight_map, _ = read_index(path, check_files=False)  # shards still to be downloaded
    assert weight_map == {"a": "one.safetensors", "b": "two.safetensors", "c": "three.safetensors"}


def test_read_index_accepts_subfolders_and_hub_cache_symlinks(tmp_path):
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "abc"
    blobs.mkdir()
    (snapshot / "sub").mkdir(parents=True)
    (blobs / "sha256").write_bytes(b"")
    os.symlink(os.path.join("..", "..", "blobs", "sha256"), snapshot / "model-00001-of-00002.safetensors")
    (snapshot / "sub" / "model-00002-of-00002.safetensors").write_bytes(b"")
    path = write_index_json(snapshot, {"a": "model-00001-of-00002.safetensors",
                                       "b": "sub/model-00002-of-00002.safetensors"})  # fmt: skip
    weight_map, metadata = read_index(path)
    assert weight_map["b"] == "sub/model-00002-of-00002.safetensors" and metadata == {"total_size": 0}


@pytest.mark.parametrize(
    "content, message",
    [(b"{not json", "not a valid JSON"), (b"[]", "no 'weight_map'"), (b'{"weight_map": []}', "no 'weight_map'"),
     (b'{"weight_map": {"a": 3}}', "not a file name"), (b'{"metadata": 3, "weight_map": {}}', "'metadata'"),
     (b"\xff\xfe", "not a valid JSON")],
)  # fmt: skip
def test_read_index_rejects_malformed_json(tmp_path, content, message):
    path = tmp_path / "model.safetensors.index.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_index(path)


# --- atomic writes ---------------------------------------------------------------------------------


def test_atomic_write_replaces_on_success_with_normal_permissions(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    with atomic_write(path, "w") as f:
        f.write("new")
        assert path.read_text() == "old"  # nothing visible until the block ends
    assert path.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["config.json"]


def test_atomic_write_failure_mid_write_keeps_old_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_write(path) as f:
            f.write(b"half of the new fi")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_atomic_write_failure_leaves_no_file_when_none_existed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"x")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_atomic_write_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match="modes"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    assert os.listdir(tmp_path) == []


def test_atomic_files_failure_mid_set_keeps_every_previous_file(tmp_path):
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "index.json"):
        (tmp_path / name).write_text(f"old {name}")
    with pytest.raises(OSError, match="disk full"):
        with atomic_files(tmp_path) as files:
            with files.open("model-00001-of-00002.safetensors") as f:
                f.write(b"new shard 1")
            with files.open("model-00002-of-00002.safetensors") as f:
                f.write(b"new sha")
                raise OSError("disk full")
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "index.json"):
        assert (tmp_path / name).read_text() == f"old {name}"
    assert len(os.listdir(tmp_path)) == 3  # no temporary files left


def test_atomic_files_commits_in_order_and_removes_stale_files(tmp_path):
    (tmp_path / "model-00003-of-00003.safetensors").write_text("stale")
    (tmp_path / "keep.txt").write_text("unrelated")
    with atomic_files(tmp_path) as files:
        with files.open("a.bin") as f:
            f.write(b"a")
        write_safetensors(files.path("b.safetensors"), {"x": np.ones(2, np.float32)})
        with files.open("index.json", "w") as f:
            f.write("{}")
        files.remove_on_commit("model-00003-of-00003.safetensors")
        files.remove_on_commit("index.json")  # staged too: the new file wins
        assert sorted(os.listdir(tmp_path))[:2] != ["a.bin", "b.safetensors"]  # still temporary
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.safetensors", "index.json", "keep.txt"]
    np.testing.assert_array_equal(read_safetensors(tmp_path / "b.safetensors")["x"], [1.0, 1.0])


def test_atomic_files_rejects_paths_and_duplicates(tmp_path):
    with pytest.raises(ValueError, match="plain names"):
        with atomic_files(tmp_path) as files:
            files.open("../escape.bin")
    with pytest.raises(ValueError, match="already staged"):
        with atomic_files(tmp_path) as files:
            files.open("a.bin").close()
            files.open("a.bin")
    assert os.listdir(tmp_path) == []


# --- fuzzing: only documented errors, never anything else ------------------------------------------


@FUZZ
@given(st.data())
def test_read_index_on_random_and_truncated_input_raises_only_documented_errors(tmp_path, data):
    valid = index_to_json(split_state_dict(nbytes_state(4, 4, 4), 4)[1]).encode()
    if data.draw(st.booleans(), label="random"):
        blob = data.draw(st.binary(max_size=300), label="bytes")
    else:
        blob = valid[: data.draw(st.integers(0, len(valid)), label="cut")]
    path = tmp_path / "model.safetensors.index.json"
    path.write_bytes(blob)
    try:
        read_index(path, check_files=data.draw(st.booleans(), label="check_files"))
    except (ValueError, OSError):
        pass
