"""PyTorch ``torch.save`` reader: values from both containers, and the security boundary.

No torch needed: fixtures were written by ``tools/fixtures_formats.py``; hostile and odd
files are built here with a tiny pickle-opcode writer. Tests against live torch are skipped
when it is not installed.
"""

import collections
import io
import os
import pickle
import re
import struct
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubert_tf.checkpoints.formats import UnsafeCheckpointError, load_torch_pickle, plan_torch_bin, read_torch_bin
from hubert_tf.checkpoints.formats.records import TensorRecord
from limited_child import run_limited

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "formats")
ZIP_FIXTURE = os.path.join(FIXTURES, "torch_pickle", "state_zip.bin")
LEGACY_FIXTURE = os.path.join(FIXTURES, "torch_pickle", "state_legacy.bin")
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


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
    path.write_bytes(read_bytes(ZIP_FIXTURE))
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
    with pytest.raises(ValueError, match="recursive or nested too deeply|is nested too deeply"):
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
    good = read_bytes(ZIP_FIXTURE)
    legacy = read_bytes(LEGACY_FIXTURE)
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
    blob = bytearray(read_bytes(source))
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


# --- lazy reading: plan_torch_bin ------------------------------------------------------------------


@pytest.mark.parametrize("path", [ZIP_FIXTURE, LEGACY_FIXTURE], ids=["zip", "legacy"])
@pytest.mark.parametrize("mmap", [True, False])
def test_plan_describes_every_tensor_and_reads_each_alone(path, mmap):
    expected = expected_state()
    plan = plan_torch_bin(path, mmap=mmap)
    assert list(plan) == list(expected)
    for name, record in plan.items():
        assert isinstance(record, TensorRecord) and record.name == name and record.source == path
        assert record.shape == expected[name].shape, name
        assert record.dtype == ("bfloat16" if name == "bf16" else expected[name].dtype), name
        array = record.read()
        assert array.dtype == expected[name].dtype and array.shape == expected[name].shape, name
        np.testing.assert_array_equal(array, expected[name], err_msg=name)
    # nbytes is the span a read takes from the file: a transpose spans its whole storage, a
    # zero-stride expand only its one row, a bfloat16 tensor 2 bytes per element.
    assert plan["encoder.weight"].nbytes == plan["encoder.weight_t"].nbytes == 4 * 12
    assert plan["encoder.rows"].nbytes == 4 * 9
    assert plan["expanded"].nbytes == 4 * 3 and plan["expanded"].shape == (4, 3)
    assert plan["bf16"].nbytes == 2 * 6
    assert plan["empty"].nbytes == 0


def test_plan_reads_no_storage_and_a_record_reads_only_its_own(tmp_path):
    # Storage "1" is garbage that claims to be deflated: planning never touches it, reading "w"
    # (storage "0") neither; only reading "bad" fails, with a ValueError naming the file.
    data_pkl = p_dict({
        "w": p_tensor("FloatStorage", "0", 3, 0, (3,), (1,)),
        "bad": p_tensor("FloatStorage", "1", 4, 0, (4,), (1,)),
    })  # fmt: skip
    path = torch_zip(tmp_path / "lazy.bin", data_pkl, {"0": np.array([1, 2, 3], "<f4").tobytes(), "1": b"\0" * 16})
    patch_member(path, "archive/data/1", method=zipfile.ZIP_DEFLATED, data=b"\xff" * 16)
    plan = plan_torch_bin(path)
    assert (plan["bad"].shape, plan["bad"].nbytes) == ((4,), 16)
    np.testing.assert_array_equal(plan["w"].read(), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="'archive/data/1' is corrupt") as info:
        plan["bad"].read()
    assert str(info.value).startswith(path)
    with pytest.raises(ValueError, match="'archive/data/1' is corrupt"):
        read_torch_bin(path)


def test_plan_refuses_a_state_dict_that_is_not_flat(tmp_path):
    path = torch_zip(tmp_path / "list.bin", b"\x80\x02]" + p_tensor("FloatStorage", "0", 4, 0, (4,), (1,)) + b"a.",
                     {"0": b"\0" * 16})  # fmt: skip
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        plan_torch_bin(path)


# --- hostile files that are bombs: each runs in a forked child with limits -----------------------------
#
# On the previous reader each of these crashed the process (SIGSEGV), took minutes, or allocated
# gigabytes; here they must end in a ValueError (or a correct result) fast and small. The child's
# limits turn a regression into a failed assertion instead of a dead or stalled suite.

BOMB_LIMITS = dict(memory_bytes=384 << 20, cpu_seconds=10, wall_seconds=20)


# 256 MiB: a forked child of a big test process counts the parent pages it touches (~100 MB seen in the
# full suite); the bombs these guard against took 0.5-18 GB.
def assert_refused_quickly(outcome, message, max_seconds=5.0, max_rss=256 << 20):
    assert outcome.status == "error" and outcome.error_type == "ValueError", outcome
    assert not outcome.memory_error, outcome
    assert re.search(message, outcome.message), outcome
    assert outcome.seconds < max_seconds and outcome.rss_growth < max_rss, outcome


def patch_member(path, name, method=None, data=None, file_size=None):
    """Rewrite one member of a zip in place: new raw (already compressed) ``data`` and/or
    compression ``method`` and/or a declared uncompressed ``file_size`` (both headers)."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        blobs = {}
        for info in infos:
            with open(path, "rb") as f:
                f.seek(info.header_offset + 26)
                name_length, extra_length = struct.unpack("<HH", f.read(4))
                f.seek(info.header_offset + 30 + name_length + extra_length)
                blobs[info.filename] = f.read(info.compress_size)
    out = io.BytesIO()
    central = b""
    for info in infos:
        raw, kind, size, crc = blobs[info.filename], info.compress_type, info.file_size, info.CRC
        if info.filename == name:
            raw = raw if data is None else data
            kind = kind if method is None else method
            size = size if file_size is None else file_size
        encoded = info.filename.encode()
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, kind, 0, 0, crc, len(raw), size, len(encoded), 0))
        out.write(encoded + raw)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, kind, 0, 0, crc, len(raw), size,
                               len(encoded), 0, 0, 0, 0, 0, offset) + encoded  # fmt: skip
    start = out.tell()
    out.write(central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(infos), len(infos), len(central), start, 0))
    with open(path, "wb") as f:
        f.write(out.getvalue())


def deflated_zeros_zip(path, data_pkl, name, nbytes):
    """A torch zip whose member ``name`` is ``nbytes`` zero bytes, deflated (~1/1029 the size)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(nbytes // len(chunk)):
                member.write(chunk)
    return str(path)


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize(
    "kind",
    ["tuple as dict key", "nested lists", "nested dicts"],
)
def test_deeply_nested_pickles_are_refused_before_unpickling(tmp_path, container, kind):
    # A million-deep tuple used as a dict key: hashing it recursed in C until SIGSEGV.
    body = {
        "tuple as dict key": b"}N" + b"\x85" * 1_000_000 + b"Ns",
        "nested lists": b"]" * 1_000 + b"a" * 999,
        "nested dicts": b"}" + b"N}" * 999 + b"s" * 999,
    }[kind]
    payload = b"\x80\x02" + body + b"."
    path = str(tmp_path / "deep.bin")
    torch_zip(path, payload, {}) if container == "zip" else legacy_stream(path, payload, {})
    outcome = run_limited(load_torch_pickle, path, **BOMB_LIMITS)
    assert_refused_quickly(outcome, r"is nested too deeply \(containers more than 64 levels deep")
    assert outcome.message.startswith(f"ValueError: {path}: ")


def test_depth_built_through_memo_aliases_is_refused_after_unpickling(tmp_path):
    # 200 empty lists, memoised, then list i appended into list i-1 through memo references: the
    # scan sees only depth 2 (mutation after memoisation), the iterative walk sees 200 levels.
    body = b"\x80\x02" + b"".join(b"]r" + struct.pack("<I", i) + b"0" for i in range(200))
    for i in range(1, 200):
        body += b"j" + struct.pack("<I", i - 1) + b"j" + struct.pack("<I", i) + b"a0"
    payload = body + b"j" + struct.pack("<I", 0) + b"."
    path = torch_zip(tmp_path / "alias.bin", payload, {})
    outcome = run_limited(load_torch_pickle, path, **BOMB_LIMITS)
    assert_refused_quickly(outcome, "checkpoint object is recursive or nested too deeply")


def test_nesting_up_to_the_cap_still_loads(tmp_path):
    payload = b"\x80\x02" + b"]" * 64 + b"a" * 63 + b"."
    value = load_torch_pickle(torch_zip(tmp_path / "ok.bin", payload, {}))
    for _ in range(63):
        assert len(value) == 1
        value = value[0]
    assert value == []


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_opcode_bomb_is_refused_at_the_opcode_cap(tmp_path, container):
    # 32 million EMPTY_LIST opcodes (32 MB, 31 KB deflated): ~25 s and ~2.8 GB on the old reader.
    payload = b"\x80\x02" + b"]" * 32_000_000 + b"."
    path = str(tmp_path / "opcodes.bin")
    if container == "zip":
        torch_zip(path, payload, {}, compression=zipfile.ZIP_DEFLATED)
        assert os.path.getsize(path) < 64 << 10
    else:
        legacy_stream(path, payload, {})
    outcome = run_limited(read_torch_bin, path, **BOMB_LIMITS)
    assert_refused_quickly(outcome, "has more than 1000000 opcodes")


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_oversized_pickle_is_refused_by_its_size(tmp_path, container):
    # One 40 MiB string (over the 32 MiB cap); the legacy stream is never read past the cap.
    payload = b"\x80\x02X" + struct.pack("<I", 40 << 20) + b"a" * (40 << 20) + b"."
    path = str(tmp_path / "big.bin")
    if container == "zip":
        torch_zip(path, payload, {}, compression=zipfile.ZIP_DEFLATED)
    else:
        legacy_stream(path, payload, {})
    outcome = run_limited(read_torch_bin, path, **BOMB_LIMITS)
    assert_refused_quickly(outcome, "too large for a checkpoint pickle|larger than 33554432 bytes")


@pytest.mark.parametrize(
    "size, stride, storage_numel",
    [((16384, 16384), (0, 0), 1), ((16384, 16384), (1, 1), 32767), ((1 << 20,), (0,), 2)],
    ids=["stride-0 [16384, 16384] of 2 bytes", "overlapping rows", "stride-0 vector"],
)
def test_views_larger_than_their_storage_are_refused(tmp_path, size, stride, storage_numel):
    # ~700 bytes that the old reader widened into a 1-2.6 GB float32 array.
    data_pkl = p_dict({"w": p_tensor("BFloat16Storage", "0", storage_numel, 0, size, stride)})
    path = torch_zip(tmp_path / "view.bin", data_pkl, {"0": b"\x80\x3f" * storage_numel})
    assert os.path.getsize(path) < (64 << 10) + 1024
    for function in (read_torch_bin, plan_torch_bin):
        outcome = run_limited(function, path, **BOMB_LIMITS)
        assert_refused_quickly(outcome, "refusing a stride-0 or overlapping view larger than its storage")


def test_byteorder_zip_bomb_is_refused_without_inflating(tmp_path):
    # A 256 KiB file whose byteorder record inflates to 256 MiB (read whole by the old reader).
    path = deflated_zeros_zip(tmp_path / "bomb.bin", p_dict({}), "archive/byteorder", 256 << 20)
    assert os.path.getsize(path) < 512 << 10
    outcome = run_limited(read_torch_bin, path, **BOMB_LIMITS)
    assert_refused_quickly(outcome, "byteorder record is 268435456 bytes")


def test_compressed_storage_is_inflated_only_as_far_as_its_tensors_reach(tmp_path):
    # A 256 MiB storage of zeros (256 KiB deflated) of which the state dict uses 4 floats: the old
    # reader inflated all of it; now at most the first 16 bytes are produced.
    data_pkl = p_dict({"w": p_tensor("FloatStorage", "0", 64 << 20, 0, (4,), (1,))})
    path = deflated_zeros_zip(tmp_path / "partial.bin", data_pkl, "archive/data/0", 256 << 20)

    def read_both():
        state = read_torch_bin(path)
        assert state["w"].tolist() == [0.0] * 4
        assert plan_torch_bin(path)["w"].read().tolist() == [0.0] * 4

    outcome = run_limited(read_both, **BOMB_LIMITS)
    assert outcome.status == "ok", outcome
    assert outcome.rss_growth < 64 << 20 and outcome.seconds < 5, outcome


def test_unused_members_are_never_read(tmp_path):
    # An unreferenced 256 MiB member and a referenced storage are side by side: only the latter is read.
    data_pkl = p_dict({"w": p_tensor("FloatStorage", "0", 2, 0, (2,), (1,))})
    path = deflated_zeros_zip(tmp_path / "unused.bin", data_pkl, "archive/data/999", 256 << 20)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("archive/data/0", np.array([1.5, -2.0], "<f4").tobytes())

    def read_and_check():
        assert read_torch_bin(path, mmap=False)["w"].tolist() == [1.5, -2.0]

    outcome = run_limited(read_and_check, **BOMB_LIMITS)
    assert outcome.status == "ok" and outcome.rss_growth < 64 << 20, outcome


def test_member_claiming_more_than_deflate_can_produce_is_refused(tmp_path):
    data_pkl = p_dict({"w": p_tensor("FloatStorage", "0", 1 << 20, 0, (4,), (1,))})
    path = torch_zip(tmp_path / "ratio.bin", data_pkl, {"0": b"\0" * 16}, compression=zipfile.ZIP_DEFLATED)
    patch_member(path, "archive/data/0", file_size=4 << 20)  # 4 MiB from a few compressed bytes
    with pytest.raises(ValueError, match=r"more than deflate's 1032:1\); refusing a zip bomb") as info:
        read_torch_bin(path)
    assert str(info.value).startswith(path)


def test_members_sharing_one_local_header_are_refused(tmp_path):
    # Two central-directory entries on the same bytes (the overlap trick of zip bombs).
    data_pkl = p_dict({"a": p_tensor("FloatStorage", "0", 2, 0, (2,), (1,)),
                       "b": p_tensor("FloatStorage", "1", 2, 0, (2,), (1,))})  # fmt: skip
    path = torch_zip(tmp_path / "overlap.bin", data_pkl, {"0": b"\0" * 8, "1": b"\0" * 8})
    blob = bytearray(read_bytes(path))
    with zipfile.ZipFile(path) as archive:
        first, second = archive.getinfo("archive/data/0"), archive.getinfo("archive/data/1")
    entry = blob.index(b"PK\x01\x02")  # the first central directory entry
    while blob[entry + 46 : entry + 46 + len(second.filename)] != second.filename.encode():
        entry = blob.index(b"PK\x01\x02", entry + 4)
    blob[entry + 42 : entry + 46] = struct.pack("<I", first.header_offset)  # its local header offset
    write_bytes(path, bytes(blob))
    with pytest.raises(ValueError, match="overlaps another member"):
        read_torch_bin(path)


def test_truncated_file_fails_at_read_time_not_with_a_crash(tmp_path):
    # The plan is made, then the file loses its tail: read() checks sizes again (no SIGBUS from a
    # mapping past the end of the file).
    path = str(tmp_path / "shrinks.bin")
    write_bytes(path, read_bytes(LEGACY_FIXTURE))
    plan = plan_torch_bin(path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 64)
    outcome = run_limited(lambda: [record.read() for record in plan.values()], **BOMB_LIMITS)
    assert outcome.status == "error" and outcome.error_type == "ValueError", outcome
    assert "runs past the end of the file" in outcome.message, outcome


def test_many_views_of_one_storage_are_refused_together(tmp_path):
    # Each of 64 views fits its 64 KiB storage, but together they would be 64 times the storage
    # (30,000 of them from a ~1 MB file would be 60 GB once widened from bfloat16).
    storage = 32 << 10
    views = {f"w{i}": p_tensor("BFloat16Storage", "0", storage, 0, (storage,), (1,)) for i in range(64)}
    path = torch_zip(tmp_path / "views.bin", p_dict(views), {"0": b"\x80\x3f" * storage})
    outcome = run_limited(read_torch_bin, path, **BOMB_LIMITS)
    assert_refused_quickly(outcome, r"would materialise 4194304 bytes from 65536 bytes of storage \(more than 8 times")
    plan = plan_torch_bin(path)  # one record at a time is the loader's to bound (by the model's size)
    np.testing.assert_array_equal(plan["w63"].read()[:2], [1.0, 1.0])
    few = torch_zip(tmp_path / "few.bin", p_dict(dict(list(views.items())[:8])), {"0": b"\x80\x3f" * storage})
    assert len(read_torch_bin(few)) == 8  # 8 views: at the cap, still read


def test_huge_central_directory_is_refused_before_it_is_parsed(tmp_path):
    # The end record declares 64 MiB of central directory (~1.4M members, ~700 MB of zipfile
    # bookkeeping once parsed): refused from the 22-byte end record alone.
    path = torch_zip(tmp_path / "members.bin", p_dict({}), {})
    blob = bytearray(read_bytes(path))
    end = blob.rindex(b"PK\x05\x06")
    blob[end + 12 : end + 16] = struct.pack("<I", 64 << 20)
    write_bytes(path, bytes(blob))
    with pytest.raises(ValueError, match=r"central directory is 67108864 bytes \(more than 16777216\)"):
        read_torch_bin(path)
