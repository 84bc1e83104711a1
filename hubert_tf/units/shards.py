"""HuBERT targets at corpus scale, in fairseq's layout (`examples/hubert/simple_kmeans`): features dumped
by shard, k-means on a sample, labels assigned by shard.

Files, for a `split` (e.g. "train") cut into `nshard` shards numbered `rank`:

- manifest `{split}.tsv`: the audio root directory on the first line, then `<relative path>\\t<samples>`;
- `{feat_dir}/{split}_{rank}_{nshard}.npy`: float32 [frames of all the shard's utterances, dim], and
  `.len`: one frame count per utterance (`dump_features`, one process per shard, in parallel);
- a k-means fitted on a `percent` sample of the utterances of every shard (`learn_kmeans`: only the
  sample is in memory, read from the memory-mapped dumps in float32);
- `{lab_dir}/{split}_{rank}_{nshard}.km`: one line of space-separated cluster ids per utterance
  (`dump_labels`), concatenated into `{split}.km` (`merge_labels`).

Every file is written atomically (`hubert_tf.files`): a killed shard job leaves no half-written dump.

    >>> for rank in range(3):                                                         # doctest: +SKIP
    ...     dump_features("train.tsv", "mfcc", "feat", "train", nshard=3, rank=rank)
    >>> km = learn_kmeans("feat", "train", nshard=3, n_clusters=100, percent=0.1)     # doctest: +SKIP
    >>> for rank in range(3):                                                         # doctest: +SKIP
    ...     dump_labels("feat", "train", km, nshard=3, rank=rank, lab_dir="labels")
    >>> merge_labels("labels", "train", nshard=3)                                     # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from ..files import atomic_files, atomic_write
from .kmeans import KMeans

FeatureFn = Callable[[str], np.ndarray]


def shard_range(total: int, nshard: int, rank: int) -> tuple[int, int]:
    """[start, end) of the utterances of shard `rank` of `nshard` (fairseq's `get_shard_range`).

    >>> [shard_range(7, 3, r) for r in range(3)]
    [(0, 2), (2, 5), (5, 7)]
    """
    if isinstance(nshard, bool) or not isinstance(nshard, (int, np.integer)) or nshard < 1:
        raise ValueError(f"nshard must be a positive int, got {nshard!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < nshard:
        raise ValueError(f"rank must be an int in [0, {nshard}), got {rank!r}")
    return int(round(total / nshard * rank)), int(round(total / nshard * (rank + 1)))


def read_manifest(path) -> list[str]:
    """The audio paths of a fairseq manifest (root on the first line, then `<relative path>\\t<samples>`).

    Raises:
        ValueError: an empty manifest or a line without its tab-separated sample count, naming the line.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines:
        raise ValueError(f"{path}: empty manifest (expected the audio root on the first line)")
    root, paths = lines[0].strip(), []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        relative, sep, samples = line.partition("\t")
        if not sep or not samples.strip().isdigit():
            raise ValueError(f"{path}:{number}: expected '<relative path>\\t<number of samples>', got {line!r}")
        paths.append(os.path.join(root, relative))
    return paths


def write_manifest(path, root, files: Sequence[str], lengths: Sequence[int]) -> None:
    """Writes a fairseq manifest: `root`, then the `files` (relative to it) with their sample counts."""
    with atomic_write(path, "w") as f:
        f.write(f"{os.fspath(root)}\n")
        for name, length in zip(files, lengths, strict=True):
            f.write(f"{name}\t{int(length)}\n")


def _feature_fn(features) -> FeatureFn:
    if features == "mfcc":  # HuBERT's first iteration: 39-dim MFCCs at 100 Hz
        from .discrete import read_audio
        from .mfcc import mfcc

        return lambda path: mfcc(read_audio(path))
    if not callable(features):
        raise ValueError(f"features must be 'mfcc' or a function path -> [frames, dim], got {features!r}")
    return features


def shard_paths(feat_dir, split: str, nshard: int, rank: int) -> tuple[str, str]:
    """The `.npy` and `.len` paths of one feature shard."""
    stem = os.path.join(os.fspath(feat_dir), f"{split}_{rank}_{nshard}")
    return stem + ".npy", stem + ".len"


def dump_features(manifest, features, feat_dir, split: str, nshard: int = 1, rank: int = 0) -> tuple[str, str]:
    """Computes the features of shard `rank` of the manifest's utterances and writes its `.npy`/`.len`.

    Args:
        manifest: a fairseq manifest path, or a list of audio paths.
        features: "mfcc" (39-dim, 100 Hz), or a function `audio path -> float [frames, dim]`, e.g.
            `lambda p: extract_layer_features(model, p, layer=6)` for the second iteration.
        feat_dir: output directory (created).
        split, nshard, rank: the shard (file names `{split}_{rank}_{nshard}.npy`).

    Returns:
        The `.npy` and `.len` paths. Frames are streamed to a temporary file, never all in memory.

    Raises:
        ValueError: a bad shard, or features that are not finite 2-D arrays of one dimension (naming
            the file).
    """
    paths = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else [os.fspath(p) for p in manifest]
    start, end = shard_range(len(paths), nshard, rank)
    compute = _feature_fn(features)
    os.makedirs(feat_dir, exist_ok=True)
    npy_path, len_path = shard_paths(feat_dir, split, nshard, rank)
    lengths, dim = [], None
    with tempfile.TemporaryFile(dir=feat_dir) as raw:
        for path in paths[start:end]:
            x = np.asarray(compute(path))
            if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
                raise ValueError(f"{path}: features of shape {x.shape}, expected [frames, {dim or 'dim'}]")
            if not np.isfinite(x).all():
                raise ValueError(f"{path}: features contain NaN or infinity")
            dim = x.shape[1]
            raw.write(np.ascontiguousarray(x, np.float32).tobytes())
            lengths.append(x.shape[0])
        raw.seek(0)
        with atomic_files(feat_dir) as files:
            with files.open(os.path.basename(npy_path)) as f:
                shape = (sum(lengths), dim or 0)
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
                shutil.copyfileobj(raw, f, 1 << 20)
            with files.open(os.path.basename(len_path), "w") as f:  # staged last: complete .len = complete shard
                f.write("".join(f"{n}\n" for n in lengths))
    return npy_path, len_path


def load_shard(feat_dir, split: str, nshard: int, rank: int) -> tuple[np.ndarray, list[int]]:
    """The memory-mapped features [frames, dim] of one shard and its utterance lengths.

    Raises:
        ValueError: a `.len` that is not one non-negative int per line, a `.npy` that is not 2-D float,
            or lengths that do not add up to its frames (naming the files).
    """
    npy_path, len_path = shard_paths(feat_dir, split, nshard, rank)
    with open(len_path, encoding="utf-8") as f:
        lines = f.read().split()
    if not all(line.isdigit() for line in lines):
        raise ValueError(f"{len_path}: expected one non-negative frame count per line")
    lengths = [int(line) for line in lines]
    try:
        x = np.load(npy_path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{npy_path}: not a feature dump ({error})") from None
    if x.ndim != 2 or x.dtype.kind != "f":
        raise ValueError(f"{npy_path}: features must be float [frames, dim], got {x.dtype} {x.shape}")
    if sum(lengths) != x.shape[0]:
        raise ValueError(f"{len_path}: lengths add up to {sum(lengths)} frames but {npy_path} has {x.shape[0]}")
    return x, lengths


def sample_features(feat_dir, split: str, nshard: int, percent: float = -1.0, seed: int = 0) -> np.ndarray:
    """float32 [frames, dim]: the frames of a random `percent` of the utterances of every shard (fairseq's
    `learn_kmeans.py --percent`; -1 = all), read from the memory-mapped dumps.

    Raises:
        ValueError: `percent` not -1 and not in (0, 1], or a bad shard (see `load_shard`).
    """
    if percent != -1 and not 0 < percent <= 1:
        raise ValueError(f"percent must be in (0, 1] or -1 (all utterances), got {percent!r}")
    rng = np.random.default_rng(seed)
    parts = []
    for rank in range(nshard):
        x, lengths = load_shard(feat_dir, split, nshard, rank)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        chosen = range(len(lengths))
        if percent != -1:
            count = int(np.ceil(len(lengths) * percent))
            chosen = np.sort(rng.choice(len(lengths), count, replace=False))  # sorted: sequential reads
        parts.extend(np.asarray(x[offsets[i]:offsets[i + 1]], np.float32) for i in chosen)
    if not parts:
        raise ValueError(f"{feat_dir}: no utterances in the {nshard} shards of {split!r}")
    return np.concatenate(parts, axis=0)


def learn_kmeans(feat_dir, split: str, nshard: int, n_clusters: int, percent: float = -1.0, seed: int = 0,
                 **kwargs) -> KMeans:
    """Fits `hubert_tf.units.KMeans` on `sample_features(feat_dir, split, nshard, percent, seed)`.

    `kwargs` go to `KMeans` (batch_size, max_iter, tol, init_size, metadata). With `percent=-1` the
    result equals `KMeans(n_clusters, seed=seed).fit(<every utterance's features in manifest order>)`.
    """
    return KMeans(n_clusters, seed=seed, **kwargs).fit(sample_features(feat_dir, split, nshard, percent, seed))


def dump_labels(feat_dir, split: str, kmeans: KMeans, nshard: int, rank: int, lab_dir) -> str:
    """Writes `{lab_dir}/{split}_{rank}_{nshard}.km`: the cluster ids of every utterance of the shard, one
    space-separated line each (fairseq's `dump_km_label.py`). Returns its path."""
    x, lengths = load_shard(feat_dir, split, nshard, rank)
    if x.shape[1] != kmeans.dim:
        raise ValueError(f"{shard_paths(feat_dir, split, nshard, rank)[0]}: features of dim {x.shape[1]} "
                         f"but the k-means has {kmeans.dim}")
    os.makedirs(lab_dir, exist_ok=True)
    path = os.path.join(os.fspath(lab_dir), f"{split}_{rank}_{nshard}.km")
    with atomic_write(path, "w") as f:
        start = 0
        for n in lengths:
            f.write(" ".join(map(str, kmeans.predict(np.asarray(x[start:start + n])).tolist())) + "\n")
            start += n
    return path


def merge_labels(lab_dir, split: str, nshard: int) -> str:
    """Concatenates the shards' `.km` files into `{lab_dir}/{split}.km` (in utterance order)."""
    path = os.path.join(os.fspath(lab_dir), f"{split}.km")
    with atomic_write(path, "w") as out:
        for rank in range(nshard):
            with open(os.path.join(os.fspath(lab_dir), f"{split}_{rank}_{nshard}.km"), encoding="utf-8") as f:
                shutil.copyfileobj(f, out)
    return path


def read_km_labels(path) -> list[np.ndarray]:
    """The label lines of a `.km` file as int64 arrays (one per utterance).

    Raises:
        ValueError: a line with something else than non-negative ints, naming the line.
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            tokens = line.split()
            if not all(t.isdigit() for t in tokens):
                raise ValueError(f"{path}:{number}: expected space-separated cluster ids")
            out.append(np.array([int(t) for t in tokens], np.int64))
    return out
