"""PyTorch ``torch.save`` reader: values from both containers, and the security boundary.

No torch needed: fixtures were written by ``tools/fixtures_formats.py``; hostile and odd
files are built here with a tiny pickle-opcode writer. Tests against live torch are skipped
when it is not installed.
"""

import collections
import io
import os
import pickle
import struct
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubert_tf.checkpoints.formats import UnsafeCheckpointError, load_torch_pickle, read_torch_bin

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "formats")
ZIP_FIXTURE = os.path.join(FIXTURES, "torch_pickle", "state_zip.bin")
LEGACY_FIXTURE = os.path.join(FIXTURES, "torch_pickle", "state_legacy.bin")
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def expected_state():
    with np.load(os.path.join(FIXTURES, "torch_pickle", "expected.npz")) as data:
        return {k: data[k] for k in data.files}


def assert_same_tensors(actual, expected):
    assert list(actual) == list(expected)
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype, name
        assert actual[name].shape == value.shape, name
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


# --- a tiny pickle writer for hand-made checkpoints -----------------------------------------------


def p_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def p_str(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def p_int(value):
    return b"J" + struct.pack("<i", value)


def p_tuple(*items):
    return b"(" + b"".join(items) + b"t"


def p_tensor(storage_type, key, numel, offset, size, stride, legacy=False):
    pid = [p_str("storage"), p_global("torch", storage_type), p_str(key), p_str("cpu"), p_int(numel)]
    if legacy:
        pid.append(b"N")
    storage = p_tuple(*pid) + b"Q"  # BINPERSID
    hooks = p_global("collections", "OrderedDict") + b")R"
    args = p_tuple(storage, p_int(offset), p_tuple(*map(p_int, size)), p_tuple(*map(p_int, stride)), b"\x89", hooks)
    return p_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def p_dict(items):
    """A protocol-2 pickle of an OrderedDict of already-encoded values."""
    body = b"".join(p_str(k) + v for k, v in items.items())
    return b"\x80\x02" + p_global("collections", "OrderedDict") + b")R(" + body + b"u."


def torch_zip(path, data_pkl, storages, byteorder="little", prefix="archive", compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr(f"{prefix}/data.pkl", data_pkl)
        if byteorder is not None:
            archive.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in storages.items():
            archive.writestr(f"{prefix}/data/{key}", raw)
        archive.writestr(f"{prefix}/version", "3\n")
    return str(path)


def legacy_stream(path, main_pickle, storages):
    """The pre-1.6 format: magic, protocol, sys_info, object, keys, then the raw storages."""
    with open(path, "wb") as f:
        for value in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(value, f, protocol=2)
        f.write(main_pickle)
        pickle.dump(list(storages), f, protocol=2)
        for raw, itemsize in storages.values():
            f.write(struct.pack("<q", len(raw) // itemsize) + raw)
    return str(path)


# --- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [ZIP_FIXTURE, LEGACY_FIXTURE], ids=["zip", "legacy"])
@pytest.mark.parametrize("mmap", [True, False])
def test_fixtures_match_torch_values(path, mmap):
    # Covers every dtype, bfloat16 -> float32, views (transpose, row slice, column), an expanded
    # (zero-stride) tensor, a 0-d and an empty tensor, a Parameter, and OrderedDict._metadata.
    state = read_torch_bin(path, mmap=mmap)
    assert_same_tensors(state, expected_state())
    assert type(state) is dict


def test_zip_folder_name_need_not_match_file_name():
    with zipfile.ZipFile(ZIP_FIXTURE) as archive:
        assert archive.namelist()[0].startswith("some_other_archive/")


@pytest.mark.parametrize("path", [ZIP_FIXTURE, LEGACY_FIXTURE], ids=["zip", "legacy"])
def test_views_of_one_storage_share_memory(path):
    state = read_torch_bin(path)
    weight = state["encoder.weight"]
    for view in ("encoder.weight_t", "encoder.rows", "encoder.column"):
        assert np.shares_memory(weight, state[view]), view
    assert not state["encoder.weight_t"].flags.c_contiguous  # torch's strides are kept
    assert state["expanded"].strides[0] == 0


def test_mmap_arrays_are_private_copies_on_write(tmp_path):
    path = tmp_path / "copy.bin"
    path.write_bytes(open(ZIP_FIXTURE, "rb").read())
    before = path.read_bytes()
    state = read_torch_bin(path)
    state["encoder.weight"][0, 0] = 1e6
    assert path.read_bytes() == before


def test_state_dict_saved_by_transformers():
    folder = os.path.join(FIXTURES, "legacy_h5")
    with np.load(os.path.join(folder, "pytorch_model_state.npz")) as data:
        expected = {k: data[k] for k in data.files}
    assert_same_tensors(read_torch_bin(os.path.join(folder, "pytorch_model.bin")), expected)


def test_big_endian_zip_and_bfloat16(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    bf16 = np.array([1.5, -2.0, 3.0], dtype=ml_dtypes.bfloat16)
    data_pkl = p_dict({
        "w": p_tensor("FloatStorage", "0", 6, 0, (2, 3), (3, 1)),
        "b": p_tensor("BFloat16Storage", "1", 3, 0, (3,), (1,)),
        "l": p_tensor("LongStorage", "2", 2, 0, (2,), (1,)),
    })  # fmt: skip
    storages = {"0": values.astype(">f4").tobytes(), "1": bf16.view("<u2").astype(">u2").tobytes(),
                "2": np.array([1, -(2**40)], ">i8").tobytes()}  # fmt: skip
    path = torch_zip(tmp_path / "big.bin", data_pkl, storages, byteorder="big")
    state = read_torch_bin(path)
    np.testing.assert_array_equal(state["w"], values)
    assert state["w"].dtype == np.float32 and state["w"].dtype.isnative
    np.testing.assert_array_equal(state["b"], [1.5, -2.0, 3.0])
    np.testing.assert_array_equal(state["l"], [1, -(2**40)])
    assert read_torch_bin(path, bf16_as_float32=False)["b"].dtype == ml_dtypes.bfloat16


def test_compressed_zip_members_are_read(tmp_path):
    data_pkl = p_dict({"w": p_tensor("FloatStorage", "0", 4, 1, (3,), (1,))})
    raw = np.array([9, 1, 2, 3], "<f4").tobytes()
    path = torch_zip(tmp_path / "deflated.bin", data_pkl, {"0": raw}, compression=zipfile.ZIP_DEFLATED)
    np.testing.assert_array_equal(read_torch_bin(path)["w"], [1.0, 2.0, 3.0])


def test_legacy_stream_built_by_hand(tmp_path):
    main = p_dict({"w": p_tensor("IntStorage", "k1", 3, 0, (3,), (1,), legacy=True)})
    path = legacy_stream(tmp_path / "legacy.bin", main, {"k1": (np.array([5, 6, 7], "<i4").tobytes(), 4)})
    np.testing.assert_array_equal(read_torch_bin(path)["w"], [5, 6, 7])


def test_load_torch_pickle_returns_nested_objects(tmp_path):
    body = (b"\x80\x02}(" + p_str("model") + b"}(" + p_str("w")
            + p_tensor("FloatStorage", "0", 1, 0, (), ()) + b"u" + p_str("step") + p_int(7) + b"u.")  # fmt: skip
    path = torch_zip(tmp_path / "ckpt.bin", body, {"0": np.array([2.0], "<f4").tobytes()})
    loaded = load_torch_pickle(path)
    assert loaded["step"] == 7
    np.testing.assert_array_equal(loaded["model"]["w"], np.float32(2.0))
    with pytest.raises(ValueError, match="'model' is a dict, not a tensor"):
        read_torch_bin(path)


def test_shared_substructures_are_converted_once(tmp_path):
    # 60 levels of (x, x): 2**60 visits without memoization, one each with it.
    body = b"\x80\x02" + p_tensor("FloatStorage", "0", 1, 0, (), ()) + b"q\x00"
    for level in range(1, 61):
        body += b"h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"\x86q" + bytes([level])
    path = torch_zip(tmp_path / "wide.bin", body + b".", {"0": np.zeros(1, "<f4").tobytes()})
    top = load_torch_pickle(path)
    for _ in range(60):
        assert top[0] is top[1]
        top = top[0]
    assert isinstance(top, np.ndarray)


@pytest.mark.parametrize(
    "body",
    [b"\x80\x02]q\x00h\x00a.", b"\x80\x02" + b"]" * 150 + b"a" * 149 + b"."],
    ids=["self-containing list", "150 nested lists"],
)
def test_recursive_or_deep_objects_are_refused(tmp_path, body):
    path = torch_zip(tmp_path / "deep.bin", body, {})
    with pytest.raises(ValueError, match="recursive or nested too deeply"):
        load_torch_pickle(path)


# --- the security boundary ---------------------------------------------------------------------


class Reduce:
    """An object whose pickle calls ``func(*args)`` on load (what an attacker ships)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def hostile_pickles(marker):
    import subprocess

    command = f"touch {marker}"
    return {
        "os.system GLOBAL": b"cos\nsystem\n(" + b"S'" + command.encode() + b"'\ntR.",
        "posix.system reduce": pickle.dumps(Reduce(os.system, command), protocol=2),
        "subprocess.call": pickle.dumps(Reduce(subprocess.call, ["touch", str(marker)]), protocol=4),
        "builtins.eval": pickle.dumps(Reduce(eval, f"__import__('os').system({command!r})"), protocol=2),
        "builtins.exec": pickle.dumps(Reduce(exec, f"import os; os.system({command!r})"), protocol=4),
        "__import__": pickle.dumps(Reduce(__import__, "os"), protocol=2),
        # an allowed module with a name torch uses for non-CPU tensors (still refused)
        "torch._utils other": b"\x80\x02" + p_global("torch._utils", "_rebuild_device_tensor_from_numpy") + b")R.",
        # dotted attribute access through an allowed global (protocol 4 STACK_GLOBAL)
        "dotted name": (b"\x80\x04" + b"\x8c\x0ctorch._utils" + b"\x94" + b"\x8c\x22_rebuild_tensor_v2.__globals__.get"
                        + b"\x94\x93."),  # fmt: skip
    }


@pytest.mark.parametrize("container", ["raw", "zip", "legacy"])
def test_hostile_globals_are_refused_and_never_run(tmp_path, container):
    marker = tmp_path / "pwned_xyz"
    for case, payload in hostile_pickles(marker).items():
        path = str(tmp_path / f"{container}.bin")
        if container == "raw":
            with open(path, "wb") as f:
                f.write(payload)
        elif container == "zip":
            torch_zip(path, payload, {})
        else:
            legacy_stream(path, payload, {})
        with pytest.raises(UnsafeCheckpointError) as info:
            read_torch_bin(path)
        message = str(info.value)
        assert message.startswith(f"{path}: refusing to load global '"), case
        assert isinstance(info.value, pickle.UnpicklingError) and isinstance(info.value, ValueError)
        assert not marker.exists(), case


def test_refusal_names_the_global(tmp_path):
    path = torch_zip(tmp_path / "pytorch_model.bin", b"cos\nsystem\n(S'true'\ntR.", {})
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model.bin: refusing to load global 'os.system'"):
        read_torch_bin(path)


def test_hostile_payload_is_real(tmp_path):
    """Control: the plain unpickler does run the payload, so the refusals above mean something."""
    marker = tmp_path / "control_marker"
    pickle.loads(hostile_pickles(marker)["os.system GLOBAL"])
    assert marker.exists()


@pytest.mark.parametrize(
    "payload, message",
    [
        # BUILD on a rebuilt tensor (could smuggle state into an object)
        (b"\x80\x02" + p_tensor("FloatStorage", "0", 1, 0, (), ()) + b"}b.", "refusing to set state"),
        # BUILD on an allowed function (would otherwise set attributes on it)
        (b"\x80\x02" + p_global("torch._utils", "_rebuild_tensor_v2") + b"N}\x86b.", "refusing to set state"),
        (b"\x80\x02" + p_global("collections", "OrderedDict") + b"}b.", "corrupt pickle"),
        # calling a storage class directly
        (b"\x80\x02" + p_global("torch", "FloatStorage") + b")R.", "refusing to call"),
        # INST / OBJ opcodes, which torch never writes
        (b"(itorch._utils\n_rebuild_tensor\n.", "opcode INST"),
        (b"\x80\x02(" + p_global("collections", "OrderedDict") + b"o.", "opcode OBJ"),
        # a memo index far beyond the pickle's size (would allocate a huge table)
        (b"\x80\x02N" + b"r\xff\xff\xff\x7f.", "memo index"),
        # persistent ids that are not torch storages
        (b"\x80\x02" + p_str("boom") + b"Q.", "persistent id"),
        (b"\x80\x02" + p_tuple(p_str("storage"), p_global("collections", "OrderedDict"), p_str("0"), p_str("cpu"),
                               p_int(1)) + b"Q.", "malformed storage"),  # fmt: skip
        # a tensor that reads past the end of its storage
        (p_dict({"w": p_tensor("FloatStorage", "0", 2, 1, (2,), (1,))}), "reads past the end"),
    ],
    ids=["build-on-tensor", "build-on-function", "build-on-class", "call-storage", "inst", "obj", "memo",
         "persid-str", "persid-type", "out-of-bounds"],  # fmt: skip
)
def test_malformed_structure_raises_value_error(tmp_path, payload, message):
    path = torch_zip(tmp_path / "odd.bin", payload, {"0": np.zeros(2, "<f4").tobytes()})
    with pytest.raises(ValueError, match=message) as info:
        read_torch_bin(path)
    assert str(info.value).startswith(path)


# --- damaged or foreign files --------------------------------------------------------------------


def damaged_files(tmp_path):
    good = open(ZIP_FIXTURE, "rb").read()
    legacy = open(LEGACY_FIXTURE, "rb").read()
    tar_path = tmp_path / "old.tar"
    with tarfile.open(tar_path, "w") as archive:
        info = tarfile.TarInfo("storages")
        archive.addfile(info, io.BytesIO(b""))
    one_tensor = p_dict({"w": p_tensor("FloatStorage", "0", 4, 0, (4,), (1,))})
    files = {
        "empty": (b"", "not a PyTorch checkpoint|corrupt"),
        "text": (b"hello, world\n" * 10, "corrupt|not a PyTorch"),
        "zip cut in half": (good[: len(good) // 2], "corrupt"),
        "zip without data.pkl": (None, "no '<folder>/data.pkl'"),
        "storage missing": (None, "is missing"),
        "storage too small": (None, "holds 8 bytes, needs 16"),
        "odd byteorder": (None, "unknown byteorder"),
        "legacy cut in half": (legacy[: len(legacy) // 2], "truncated|corrupt"),
        "legacy cut at the end": (legacy[:-3], "truncated"),
        "old tar format": (tar_path.read_bytes(), "tar checkpoints are not supported"),
        "list not dict": (None, "not a state dict"),
    }
    builders = {
        "zip without data.pkl": lambda p: zipfile.ZipFile(p, "w").close(),
        "storage missing": lambda p: torch_zip(p, one_tensor, {}),
        "storage too small": lambda p: torch_zip(p, one_tensor, {"0": b"\0" * 8}),
        "odd byteorder": lambda p: torch_zip(p, one_tensor, {"0": b"\0" * 16}, byteorder="middle"),
        "list not dict": lambda p: torch_zip(p, b"\x80\x02]" + p_tensor("FloatStorage", "0", 4, 0, (4,), (1,))
                                             + b"a.", {"0": b"\0" * 16}),  # fmt: skip
    }
    return files, builders


def test_damaged_files_raise_value_error_naming_the_file(tmp_path):
    files, builders = damaged_files(tmp_path)
    for case, (content, message) in files.items():
        path = str(tmp_path / "damaged.bin")
        if content is None:
            builders[case](path)
        else:
            with open(path, "wb") as f:
                f.write(content)
        with pytest.raises(ValueError, match=message) as info:
            read_torch_bin(path)
        assert str(info.value).startswith(path), case


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_torch_bin(tmp_path / "nope.bin")


# --- fuzzing: only documented errors, never anything else -----------------------------------------


def read_quietly(path):
    for mmap in (True, False):
        try:
            read_torch_bin(path, mmap=mmap)
        except (ValueError, OSError, pickle.UnpicklingError):
            pass


@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes_raise_only_documented_errors(tmp_path, data):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    read_quietly(path)


@FUZZ
@given(st.data())
def test_truncated_and_mutated_checkpoints_raise_only_documented_errors(tmp_path, data):
    source = data.draw(st.sampled_from([ZIP_FIXTURE, LEGACY_FIXTURE]), label="source")
    blob = bytearray(open(source, "rb").read())
    blob = blob[: data.draw(st.integers(0, len(blob)), label="cut")]
    for _ in range(data.draw(st.integers(0, 3), label="mutations")):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "fuzz.bin"
    path.write_bytes(bytes(blob))
    read_quietly(path)


@FUZZ
@given(st.data())
def test_mutated_data_pkl_raises_only_documented_errors(tmp_path, data):
    with zipfile.ZipFile(ZIP_FIXTURE) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = "some_other_archive/data.pkl"
    blob = bytearray(members[name])
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    members[name] = bytes(blob)
    path = tmp_path / "fuzz.bin"
    with zipfile.ZipFile(path, "w") as archive:
        for member, raw in members.items():
            archive.writestr(member, raw)
    read_quietly(path)


# --- against live torch (dev-only) --------------------------------------------------------------


def test_random_state_dicts_saved_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 5), torch.nn.LayerNorm(3), torch.nn.Linear(3, 4))
    module.half()
    state = collections.OrderedDict(module.state_dict())
    matrix = torch.randn(5, 6, generator=generator)
    state["view.t"], state["view.slice"], state["base"] = matrix.t(), matrix[2:, 1::2], matrix
    state["bf16"] = torch.randn(3, 2, generator=generator).bfloat16()
    state["bool"] = torch.rand(7, generator=generator) > 0.5
    for legacy in (False, True):
        path = tmp_path / f"state_{legacy}.bin"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        loaded = read_torch_bin(path)
        assert list(loaded) == list(state)
        for name, tensor in state.items():
            expected = tensor.float() if tensor.dtype == torch.bfloat16 else tensor
            np.testing.assert_array_equal(loaded[name], expected.numpy(), err_msg=name)
    assert "torch" in sys.modules  # only this dev test imported it
