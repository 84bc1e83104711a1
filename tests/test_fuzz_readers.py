"""Fuzzing every checkpoint reader on byte-mutated copies of the committed fixtures.

Each reader (safetensors, ``pytorch_model.bin`` zip and legacy, ``tf_model.h5``, sharded index,
``read_json``) gets seeded, deterministic mutations of real fixture files: random bytes, boundary
integers written over 1-8 bytes, truncations, chunks deleted, duplicated or moved; half of them aimed
at the file's structure (the safetensors header, the zip central directory and ``data.pkl``, the
legacy pickles, the HDF5 superblock and object headers). Torch zips also get ``data.pkl`` mutated
*inside* a re-written archive, so the pickle parser is fuzzed past the CRC check.

Every case runs in a forked child (``limited_child.run_limited``: +1.5 GiB address space, 20 s CPU,
30 s wall clock) and must end in success or a ValueError/OSError, never a signal (SIGSEGV, SIGBUS),
a MemoryError, more than 256 MiB of resident memory or a hang. The default run does
``DEFAULT_CASES`` mutations per reader (a few seconds); ``--runslow`` adds ``SLOW_CASES`` more.
A failing case is saved under the test's tmp_path and named in the failure message with its seed.
"""

import io
import os
import pathlib
import pickletools
import random
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from limited_child import run_limited

from hubert_tf.checkpoints.formats import read_index, read_legacy_tf_h5, read_safetensors, read_torch_bin
from hubert_tf.files import read_json

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
DEFAULT_CASES = 20  # per reader, spread over its fixtures (h5: each case starts its metadata child)
SLOW_CASES = 1000
MAX_RSS_GROWTH = 256 << 20  # the fixtures are ~100 KB: a reader needing more is being bombed
LIMITS = dict(memory_bytes=(1 << 30) + (1 << 29), cpu_seconds=20, wall_seconds=30)


def fixture(*parts):
    return os.path.join(FIXTURES, *parts)


# reader name -> (fixture files, how the fixture is read in the child)
SAFETENSORS = [fixture("checkpoint_formats", "pretrained_only", "model.safetensors"),
               fixture("checkpoint_formats", "sharded_safetensors", "model-00002-of-00002.safetensors")]  # fmt: skip
BIN_ZIP = [fixture("formats", "torch_pickle", "state_zip.bin"), fixture("formats", "legacy_h5", "pytorch_model.bin"),
           fixture("checkpoint_formats", "legacy_bin", "pytorch_model.bin")]  # fmt: skip
BIN_LEGACY = [fixture("formats", "torch_pickle", "state_legacy.bin")]  # the one pre-1.6 stream
H5 = [fixture("formats", "legacy_h5", "tf_model.h5")]
INDEX = [fixture("checkpoint_formats", "sharded_safetensors", "model.safetensors.index.json"),
         fixture("checkpoint_formats", "sharded_bin", "pytorch_model.bin.index.json")]  # fmt: skip
JSON = [fixture("base_style", "config.json"), fixture("processing", "hub_files", "vocab.json")]


def touch(value):
    """Read every byte of every array returned (a memory-mapped page past the end of a file raises
    SIGBUS only when touched). Never raises, so an error here is never mistaken for the reader's."""
    for array in value.values() if isinstance(value, dict) else ():
        if isinstance(array, np.ndarray):
            array.tobytes()


def read_safetensors_both(path):
    touch(read_safetensors(path, mmap=True))
    touch(read_safetensors(path, mmap=False))


def read_torch_bin_both(path):
    touch(read_torch_bin(path, mmap=True))
    touch(read_torch_bin(path, mmap=False))


def read_h5(path):
    touch(read_legacy_tf_h5(path))


READERS = {
    "safetensors": (SAFETENSORS, read_safetensors_both),
    "bin_zip": (BIN_ZIP, read_torch_bin_both),
    "bin_legacy": (BIN_LEGACY, read_torch_bin_both),
    "h5": (H5, read_h5),
    "index_json": (INDEX, read_index),
    "read_json": (JSON, read_json),
}


# --- where each format keeps its structure (mutations aimed there find more bugs) -----------------


def _pickle_ends(data, count):
    """End offsets of the first ``count`` pickles of a legacy stream (all of its structure)."""
    stream, ends = io.BytesIO(data), []
    try:
        for _ in range(count):
            for _opcode, _arg, _pos in pickletools.genops(stream):
                pass
            ends.append(stream.tell())
    except Exception:  # a fixture always parses; keep whatever was found
        pass
    return ends


def structure_regions(kind, data):
    """(start, stop) byte ranges holding the file's structure rather than tensor bytes."""
    if kind == "safetensors":
        (header_length,) = struct.unpack("<Q", data[:8])
        return [(0, 8 + header_length)]
    if kind == "bin_zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            regions = [(archive.start_dir, len(data))]
            for info in archive.infolist():
                # every local header, and the whole data.pkl member
                end = info.header_offset + 30 + len(info.filename) + (info.compress_size if info.filename.endswith(
                    "data.pkl") else 0)  # fmt: skip
                regions.append((info.header_offset, min(end + 64, len(data))))
        return regions
    if kind == "bin_legacy":
        ends = _pickle_ends(data, 5)
        return [(0, ends[-1] + 64)] if ends else [(0, len(data))]
    if kind == "h5":
        return [(0, 4096), (len(data) - 4096, len(data))]
    return [(0, len(data))]


# --- mutations ---------------------------------------------------------------------------------

BOUNDARY_VALUES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                   0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 1 << 40, 1 << 31, 1 << 20]  # fmt: skip


def mutate(data, rng, regions):
    """One seeded mutation of ``data``; returns (new bytes, a description to reproduce it)."""
    blob = bytearray(data)

    def position():
        if regions and rng.random() < 0.5:
            start, stop = rng.choice(regions)
            return rng.randrange(start, max(start + 1, min(stop, len(blob))))
        return rng.randrange(len(blob))

    kind = rng.choice(["bytes", "bytes", "integer", "integer", "truncate", "delete", "duplicate", "move"])
    if kind == "bytes":
        edits = [(position(), rng.randrange(256)) for _ in range(rng.randint(1, 8))]
        for at, value in edits:
            blob[at] = value
        return bytes(blob), f"bytes {edits}"
    if kind == "integer":
        at, width = position(), rng.choice([1, 2, 4, 8])
        value = rng.choice(BOUNDARY_VALUES) & ((1 << (8 * width)) - 1)
        blob[at : at + width] = value.to_bytes(width, rng.choice(["little", "big"]))
        return bytes(blob), f"integer {value:#x} ({width} bytes) at {at}"
    if kind == "truncate":
        at = position()
        return bytes(blob[:at]), f"truncate at {at}"
    at, length = position(), rng.choice([1, 2, 4, 8, 16, 64, 512])
    chunk = bytes(blob[at : at + length])
    if kind == "delete":
        del blob[at : at + length]
        return bytes(blob), f"delete {length} bytes at {at}"
    target = position()
    if kind == "duplicate":
        blob[target:target] = chunk
        return bytes(blob), f"insert {length} bytes from {at} at {target}"
    blob[target : target + len(chunk)] = chunk
    return bytes(blob), f"copy {length} bytes from {at} over {target}"


def mutate_data_pkl(data, rng):
    """Mutate ``data.pkl`` inside a torch zip and re-write the archive (valid CRCs), so the mutation
    reaches the pickle scanner and unpickler instead of stopping at the CRC check."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    out = io.BytesIO()
    description = ""
    with zipfile.ZipFile(out, "w") as archive:
        for name, raw in members:
            if name.endswith("/data.pkl"):
                raw, description = mutate(raw, rng, [])
            archive.writestr(name, raw)
    return out.getvalue(), f"data.pkl: {description}"


# --- the test ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index_dirs(tmp_path_factory):
    """Copies of the sharded checkpoints (the index reader checks that the shards exist)."""
    root = tmp_path_factory.mktemp("indexes")
    for path in INDEX:
        shutil.copytree(os.path.dirname(path), root / os.path.basename(os.path.dirname(path)))
    return root


def fuzz(reader, cases, tmp_path, index_dirs, seed_base=0):
    """Run ``cases`` seeded mutations of the reader's fixtures (round robin), each in a limited child."""
    paths, function = READERS[reader]
    failures, outcomes = [], {}
    for number, path in enumerate(paths):
        original = pathlib.Path(path).read_bytes()
        regions = structure_regions(reader, original)
        if reader == "index_json":
            target = str(index_dirs / os.path.basename(os.path.dirname(path)) / os.path.basename(path))
        else:
            target = str(tmp_path / os.path.basename(path))
        # The pristine file reads, in this process: a sanity check, and it imports whatever the
        # reader imports lazily, so each child does not pay for it again (~1 s for safetensors).
        function(path if reader != "index_json" else target)
        for case in range(number, cases, len(paths)):
            seed = f"{reader}:{os.path.basename(path)}:{seed_base + case}"
            rng = random.Random(seed)
            if reader == "bin_zip" and case % 3 == 0:
                data, description = mutate_data_pkl(original, rng)
            else:
                data, description = mutate(original, rng, regions)
            with open(target, "wb") as f:
                f.write(data)
            outcome = run_limited(function, target, **LIMITS)
            label = outcome.status if outcome.status != "error" else outcome.error_type
            outcomes[label] = outcomes.get(label, 0) + 1
            if not outcome.clean or outcome.rss_growth > MAX_RSS_GROWTH:
                saved = tmp_path / f"failure-{len(failures)}-{os.path.basename(path)}"
                saved.write_bytes(data)
                failures.append(f"{seed} ({description}) -> {outcome}; input saved as {saved}")
    if reader == "index_json":  # leave the copies as they were for the next test
        for path in INDEX:
            shutil.copy(path, index_dirs / os.path.basename(os.path.dirname(path)) / os.path.basename(path))
    print(f"{reader}: {cases} mutations, outcomes {outcomes}")
    assert not failures, f"{len(failures)} of {cases} mutations misbehaved:\n" + "\n".join(failures)
    return outcomes


@pytest.mark.parametrize("reader", list(READERS))
def test_mutated_fixtures_end_in_documented_errors(reader, tmp_path, index_dirs):
    outcomes = fuzz(reader, DEFAULT_CASES, tmp_path, index_dirs)
    # The mutations must reach the parsers: most are refused (a fuzzer whose inputs all parse
    # is not testing the error paths).
    assert sum(outcomes.values()) == DEFAULT_CASES
    assert outcomes.get("ValueError", 0) + outcomes.get("OSError", 0) >= DEFAULT_CASES // 4, outcomes


@pytest.mark.slow
@pytest.mark.parametrize("reader", list(READERS))
def test_many_mutated_fixtures_end_in_documented_errors(reader, tmp_path, index_dirs):
    fuzz(reader, SLOW_CASES, tmp_path, index_dirs, seed_base=DEFAULT_CASES)


def test_the_child_reports_crashes_bombs_and_hangs():
    """Control: the harness does see what it is meant to catch, so a clean fuzz run means something."""
    import ctypes
    import time

    crash = run_limited(ctypes.string_at, 8, 1)  # reads address 8: SIGSEGV
    assert crash.status == "signal" and crash.message == "killed by SIGSEGV", crash
    bomb = run_limited(lambda: bytearray(2 << 30), memory_bytes=256 << 20)
    assert bomb.status == "error" and bomb.memory_error and not bomb.clean, bomb
    hang = run_limited(time.sleep, 60, wall_seconds=1)
    assert hang.status == "timeout", hang
    assert run_limited(int, "12").clean and run_limited(int, "x").clean
    assert not run_limited(dict.__getitem__, {}, "x").clean  # a KeyError is not a documented error


def test_readers_import_without_tensorflow():
    # The fuzz children are forked from this process; the readers must not need TensorFlow.
    code = ("import sys; import hubert_tf.checkpoints.formats, hubert_tf.files; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_known_h5_hang_from_fuzzing(tmp_path, monkeypatch):
    # Found by the slow run: seed "h5:tf_model.h5:670" (insert 512 bytes from 70227 at 5482) leaves a
    # global-heap object with index 0 and size 0, on which libhdf5 loops forever reading the
    # root's `layer_names`. The reader's metadata walk runs in a limited child first: with its
    # limit lowered to 1 s, the read must end in that ValueError well inside the 3 s wall clock.
    from hubert_tf.checkpoints.formats import legacy_h5

    original = pathlib.Path(H5[0]).read_bytes()
    data, description = mutate(original, random.Random("h5:tf_model.h5:670"), structure_regions("h5", original))
    assert description == "insert 512 bytes from 70227 at 5482"
    path = tmp_path / "tf_model.h5"
    path.write_bytes(data)
    read_h5(H5[0])  # lazy imports done here, not in the child
    monkeypatch.setattr(legacy_h5, "METADATA_SECONDS", 1.0)  # inherited by the forked child
    outcome = run_limited(read_h5, str(path), memory_bytes=LIMITS["memory_bytes"], cpu_seconds=5, wall_seconds=3)
    assert outcome.clean and outcome.status == "error", outcome
    assert outcome.message == f"ValueError: {path}: HDF5 metadata could not be parsed within 1 s: corrupt file"
    assert 1.0 <= outcome.seconds < 2.5, outcome
