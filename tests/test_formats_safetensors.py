"""safetensors reader/writer: round trips, byte compatibility with the reference library,
memory mapping, and a clear ValueError for every kind of corrupt file."""

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubert_tf.checkpoints.formats import read_safetensors, read_safetensors_metadata, write_safetensors
from hubert_tf.checkpoints.formats import safetensors as safetensors_module

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "formats", "legacy_h5")
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def every_dtype():
    """One small tensor per storable numpy dtype, plus the awkward shapes."""
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal(5).astype(np.float16),
        "f64": rng.standard_normal((2, 1, 2)),
        "c64": (rng.standard_normal(2) + 1j).astype(np.complex64),
        "i64": np.array([-(2**62), 0, 2**62], dtype=np.int64),
        "u64": np.array([2**63 + 5], dtype=np.uint64),
        "i32": np.arange(-3, 3, dtype=np.int32).reshape(2, 3),
        "u32": np.array([2**31 + 1], dtype=np.uint32),
        "i16": np.array([-300, 300], dtype=np.int16),
        "u16": np.array([65535], dtype=np.uint16),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    return tensors


def assert_same_tensors(actual, expected):
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype, name
        assert actual[name].shape == value.shape, name
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def header_of(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, f.read(n)


def write_raw(path, header, data=b"", pad=True):
    """A hand-made safetensors file: ``header`` is a dict (JSON-encoded) or raw bytes."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)
    return str(path)


# --- round trips -----------------------------------------------------------------------


def test_round_trip_every_dtype(tmp_path):
    tensors = every_dtype()
    path = tmp_path / "all.safetensors"
    write_safetensors(path, tensors)
    assert_same_tensors(read_safetensors(path), tensors)
    assert_same_tensors(read_safetensors(path, mmap=False), tensors)
    assert read_safetensors_metadata(path) == {"format": "pt"}


def test_round_trip_converts_layout_and_byte_order(tmp_path):
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensors = {"transposed": base.T, "strided": base[:, ::2], "big_endian": base.astype(">f4")}
    path = tmp_path / "layout.safetensors"
    write_safetensors(path, tensors, metadata=None)
    loaded = read_safetensors(path)
    np.testing.assert_array_equal(loaded["transposed"], base.T)
    np.testing.assert_array_equal(loaded["strided"], base[:, ::2])
    assert loaded["big_endian"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(loaded["big_endian"], base)
    assert read_safetensors_metadata(path) == {}
    assert b"__metadata__" not in header_of(path)[1]


def test_metadata_round_trip_keeps_unicode(tmp_path):
    # The library keeps metadata in a hash map: the order of several keys is its choice, not ours.
    metadata = {"format": "pt", "note": "héllo \"quoted\"\n\ttab \x01"}
    path = tmp_path / "meta.safetensors"
    write_safetensors(path, {"x": np.zeros(1, np.float32)}, metadata=metadata)
    assert read_safetensors_metadata(path) == metadata


def test_bfloat16_reads_as_exact_float32_by_default(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([[1.0, -2.5, 3.140625], [65280.0, 0.0, -0.0]], dtype=ml_dtypes.bfloat16)
    path = tmp_path / "bf16.safetensors"
    write_safetensors(path, {"w": values})
    assert json.loads(header_of(path)[1])["w"]["dtype"] == "BF16"
    as_float = read_safetensors(path)["w"]
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, values.astype(np.float32))
    kept = read_safetensors(path, bf16_as_float32=False)["w"]
    assert kept.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(kept.astype(np.float32), values.astype(np.float32))


def test_bfloat16_conversion_needs_only_numpy(tmp_path):
    # 0x3FC0 is 1.5 in bfloat16, 0xC000 is -2.0: raw bits written by hand, no ml_dtypes involved.
    bits = np.array([0x3FC0, 0xC000], dtype="<u2").tobytes()
    header = {"b": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}
    path = write_raw(tmp_path / "bits.safetensors", header, bits)
    np.testing.assert_array_equal(read_safetensors(path)["b"], np.array([1.5, -2.0], np.float32))


def test_fixture_written_by_transformers_matches_torch_values():
    state = np.load(os.path.join(FIXTURE, "pytorch_model_state.npz"))
    loaded = read_safetensors(os.path.join(FIXTURE, "model.safetensors"))
    assert_same_tensors(loaded, {k: state[k] for k in state.files})


# --- byte compatibility -------------------------------------------------------------------


def test_bytes_match_the_format_specification(tmp_path):
    # One F32 tensor: compact JSON header padded with spaces to a multiple of 8, then the data.
    path = tmp_path / "spec.safetensors"
    write_safetensors(path, {"attn.0": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}, metadata=None)
    header = b'{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'
    expected = struct.pack("<Q", 64) + header + b" " * (64 - len(header)) + np.arange(6, dtype="<f4").tobytes()
    assert path.read_bytes() == expected


def test_tensor_order_follows_the_reference_writer(tmp_path):
    # The order safetensors 0.8 writes: descending dtype alignment rank, then name.
    path = tmp_path / "order.safetensors"
    write_safetensors(path, every_dtype())
    names = [k for k in json.loads(header_of(path)[1]) if k != "__metadata__"]
    assert names == ["u64", "i64", "f64", "c64", "empty", "f32", "scalar", "u32", "i32",
                     "f16", "u16", "i16", "i8", "u8", "bool"]  # fmt: skip
    size, _ = header_of(path)
    assert size % 8 == 0


def test_bytes_identical_to_the_safetensors_library(tmp_path):
    reference = pytest.importorskip("safetensors.numpy")
    tensors = every_dtype()
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    for metadata in ({"format": "pt"}, None):
        write_safetensors(ours, tensors, metadata=metadata)
        reference.save_file(tensors, str(theirs), metadata=metadata)
        assert ours.read_bytes() == theirs.read_bytes()
    assert_same_tensors(reference.load_file(str(ours)), tensors)


def test_loadable_by_safetensors_torch(tmp_path):
    pytest.importorskip("torch")
    reference = pytest.importorskip("safetensors.torch")
    path = tmp_path / "model.safetensors"
    tensors = every_dtype()
    del tensors["u64"], tensors["u32"], tensors["u16"]  # not all torch builds map unsigned types
    write_safetensors(path, tensors)
    loaded = reference.load_file(str(path))
    for name, value in tensors.items():
        np.testing.assert_array_equal(loaded[name].numpy(), value, err_msg=name)


# --- reads return private copies ------------------------------------------------------------------


def test_reads_are_private_writable_copies_with_either_backend(tmp_path):
    path = tmp_path / "big.safetensors"
    write_safetensors(path, {"w": np.ones((256, 256), np.float32)})
    before = path.read_bytes()
    for mmap in (True, False):
        loaded = read_safetensors(path, mmap=mmap)["w"]
        assert type(loaded) is np.ndarray and loaded.flags.writeable
        loaded[0, 0] = 42.0  # private to this array
        assert path.read_bytes() == before
        assert read_safetensors(path, mmap=mmap)["w"][0, 0] == 1.0


def test_plan_reads_no_tensor_bytes(tmp_path, monkeypatch):
    path = tmp_path / "plan.safetensors"
    write_safetensors(path, {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(2, np.float16)})
    _, records = safetensors_module.plan_safetensors(path)
    assert {k: (r.shape, str(r.dtype), r.nbytes) for k, r in records.items()} == {
        "w": ((2, 3), "float32", 24), "b": ((2,), "float16", 4)}
    np.testing.assert_array_equal(records["w"].read(), np.arange(6, dtype=np.float32).reshape(2, 3))


# --- corrupt files --------------------------------------------------------------------------------

GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}

CORRUPT = {
    "too small": (b"\x01\x02", None, "too small"),
    "huge header": (struct.pack("<Q", 2**40), None, "exceeds"),
    "header past eof": (struct.pack("<Q", 64) + b"{}", None, "past the end"),
    "not utf-8": (b"\xff\xfe{}     ", b"", "UTF-8"),
    "not json": (b"{nope", b"", "not valid JSON"),
    "json list": (b"[1, 2]", b"", "expected an object"),
    "duplicate key": (b'{"a": {}, "a": {}}', b"", "repeats the key"),
    "entry not object": ({"a": 3}, b"", "not an object"),
    "missing dtype": ({"a": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "'dtype'"),
    "unknown dtype": ({"a": {"dtype": "F17", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unknown dtype"),
    "negative dim": ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "invalid shape"),
    "float dim": ({"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, b"\0" * 4, "invalid shape"),
    "bool dim": ({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 4, "invalid shape"),
    "three offsets": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}, b"\0" * 4, "data_offsets"),
    "negative offset": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, b"\0" * 4, "data_offsets"),
    "size mismatch": ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12 bytes"),
    "gap": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "gap"),
    "overlap": (
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}},
        b"\0" * 8, "overlaps",
    ),  # fmt: skip
    "reversed offsets": ({"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}, b"\0" * 4, "data_offsets"),
    "truncated data": (GOOD, b"\0" * 5, "truncated"),
    "trailing bytes": (GOOD, b"\0" * 9, "after the last tensor"),
    "bad metadata": ({"__metadata__": {"k": 1}, **GOOD}, b"\0" * 8, "__metadata__"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_files_raise_value_error_naming_file_and_problem(tmp_path, case):
    header, data, message = CORRUPT[case]
    path = str(tmp_path / "corrupt.safetensors")
    if data is None:  # raw bytes for the whole file
        with open(path, "wb") as f:
            f.write(header)
    else:
        write_raw(path, header, data)
    for read in (read_safetensors, read_safetensors_metadata):
        with pytest.raises(ValueError) as info:
            read(path)
        assert str(info.value).startswith(path)
        assert message in str(info.value)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_safetensors(tmp_path / "nope.safetensors")


def test_header_need_not_be_padded(tmp_path):
    # Third-party writers do not always pad; such files are valid (data may be unaligned).
    path = write_raw(tmp_path / "odd.safetensors", b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
                     np.array([1, 2], "<f4").tobytes(), pad=False)  # fmt: skip
    np.testing.assert_array_equal(read_safetensors(path)["a"], [1.0, 2.0])


# --- writer errors and atomicity -----------------------------------------------------------------


@pytest.mark.parametrize(
    "tensors, metadata, message",
    [
        ({"__metadata__": np.zeros(1)}, None, "reserved"),
        ({1: np.zeros(1)}, None, "must be strings"),
        ({"obj": np.array([object()])}, None, "cannot store"),
        ({"str": np.array(["x"])}, None, "cannot store"),
        ({"a": np.zeros(1)}, {"k": 1}, "strings to strings"),
    ],
)
def test_writer_rejects_bad_input_without_creating_a_file(tmp_path, tensors, metadata, message):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(ValueError, match=message):
        write_safetensors(path, tensors, metadata=metadata)
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"old": np.zeros(2, np.float32)})
    before = path.read_bytes()
    calls = []

    def explode(array):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(array)

    original = safetensors_module._contiguous_little_endian
    monkeypatch.setattr(safetensors_module, "_contiguous_little_endian", explode)
    with pytest.raises(OSError, match="disk full"):
        write_safetensors(path, {"a": np.ones(3, np.float32), "b": np.ones(3, np.float32)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]


# --- fuzzing: only documented errors, never anything else ------------------------------------------


def read_all_ways(path):
    for read in (read_safetensors, read_safetensors_metadata, lambda p: read_safetensors(p, mmap=False)):
        try:
            read(path)
        except (ValueError, OSError):
            pass


@FUZZ
@given(data=st.binary(max_size=256))
def test_random_bytes_raise_only_documented_errors(tmp_path, data):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    read_all_ways(path)


@FUZZ
@given(st.data())
def test_truncated_and_mutated_files_raise_only_documented_errors(tmp_path, data):
    valid = tmp_path / "valid.safetensors"
    if not valid.exists():
        write_safetensors(valid, every_dtype())
    blob = bytearray(valid.read_bytes())
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    blob = blob[:cut]
    if blob and data.draw(st.booleans(), label="mutate"):
        index = data.draw(st.integers(0, len(blob) - 1), label="index")
        blob[index] = data.draw(st.integers(0, 255), label="byte")
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(blob))
    read_all_ways(path)


def test_written_file_has_the_umask_mode_not_mkstemps_0600(tmp_path):
    # safetensors writes its own temporary file and renames it over the staged one; the saved
    # checkpoint must still be readable by others, like any file `open(path, "w")` makes.
    old = os.umask(0o022)
    try:
        path = tmp_path / "model.safetensors"
        write_safetensors(path, {"bias": np.zeros(3, np.float32)})
        assert os.stat(path).st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
