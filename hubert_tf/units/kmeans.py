"""Mini-batch k-means (k-means++ initialisation, fixed seed) in numpy, saved as a plain `.npz` file."""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np

from ..files import loads_json

FORMAT_VERSION = 1


def _squared_distances(x: np.ndarray, centroids: np.ndarray, centroid_norms: np.ndarray | None = None) -> np.ndarray:
    """[n, d] x [k, d] -> [n, k] squared Euclidean distances (clipped at 0)."""
    if centroid_norms is None:
        centroid_norms = np.einsum("kd,kd->k", centroids, centroids)
    d = np.einsum("nd,nd->n", x, x)[:, None] - 2.0 * x @ centroids.T + centroid_norms[None, :]
    return np.maximum(d, 0.0)


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator, local_trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, with 2 + log k local trials as scikit-learn)."""
    n = x.shape[0]
    trials = local_trials or 2 + int(np.log(k))
    centroids = np.empty((k, x.shape[1]), np.float64)
    centroids[0] = x[rng.integers(n)]
    closest = _squared_distances(x, centroids[:1])[:, 0]
    for c in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than clusters: repeat points
            centroids[c] = x[rng.integers(n)]
            continue
        candidates = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
        candidates = np.minimum(candidates, n - 1)
        distances = np.minimum(closest[None, :], _squared_distances(x, x[candidates]).T)  # [trials, n]
        best = int(np.argmin(distances.sum(axis=1)))
        centroids[c] = x[candidates[best]]
        closest = distances[best]
    return centroids


class KMeans:
    """k-means clustering of feature frames into discrete units.

    Mini-batch k-means (Sculley 2010, the algorithm of scikit-learn's `MiniBatchKMeans` that HuBERT's
    recipe uses): k-means++ seeding on up to `init_size` frames, then passes over shuffled mini-batches
    moving each centroid towards its points with a per-centroid rate 1 / count; a centroid that received
    no point in a pass is re-seeded on a random frame. Deterministic for a given `seed`.

    Args:
        n_clusters: int. Number of units.
        batch_size: int. Frames per mini-batch. Defaults to 10000.
        max_iter: int. Passes over the data. Defaults to 100.
        tol: float. Stop when no centroid moved more than `tol` x the data's mean variance in a pass.
        init_size: int. Frames used by k-means++. Defaults to 3 * batch_size (at least 3 * n_clusters).
        seed: int. Defaults to 0.
        metadata: dict. Free-form JSON-able description saved with the centroids (feature kind, model,
            layer, ...).

    Example:

    >>> import numpy as np
    >>> x = np.concatenate([np.zeros((50, 2)), np.ones((50, 2)) * 5])
    >>> km = KMeans(2, seed=0).fit(x)
    >>> sorted(np.bincount(km.predict(x)).tolist())
    [50, 50]
    """

    def __init__(self, n_clusters: int, batch_size: int = 10000, max_iter: int = 100, tol: float = 1e-4,
                 init_size: int | None = None, seed: int = 0, metadata: dict[str, Any] | None = None):
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        self.n_clusters = int(n_clusters)
        self.batch_size = int(batch_size)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.init_size = init_size
        self.seed = int(seed)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.centroids: np.ndarray | None = None
        self.inertia: float | None = None

    # ------------------------------------------------------------------------- fitting
    def fit(self, features: np.ndarray | Iterable[np.ndarray]) -> "KMeans":
        """Fits on `features`: [frames, dims], or a list of such arrays (one per utterance)."""
        x = _stack(features)
        n = x.shape[0]
        if n < self.n_clusters:
            raise ValueError(f"{n} feature frames cannot make {self.n_clusters} clusters")
        rng = np.random.default_rng(self.seed)
        init_size = self.init_size or max(3 * self.batch_size, 3 * self.n_clusters)
        sample = x[rng.choice(n, size=min(n, init_size), replace=False)]
        centroids = kmeans_plus_plus(sample, self.n_clusters, rng)
        counts = np.zeros(self.n_clusters, np.float64)
        scale = float(np.mean(np.var(x, axis=0))) or 1.0
        batch = min(self.batch_size, n)
        for _ in range(self.max_iter):
            previous = centroids.copy()
            seen = np.zeros(self.n_clusters, bool)
            order = rng.permutation(n)
            for start in range(0, n, batch):
                chunk = x[order[start:start + batch]]
                assign = np.argmin(_squared_distances(chunk, centroids), axis=1)
                batch_counts = np.bincount(assign, minlength=self.n_clusters).astype(np.float64)
                sums = np.zeros_like(centroids)
                np.add.at(sums, assign, chunk)
                hit = batch_counts > 0
                counts[hit] += batch_counts[hit]
                # c <- c + (sum - count * c) / total_count: the running mean of every point seen.
                centroids[hit] += (sums[hit] - batch_counts[hit, None] * centroids[hit]) / counts[hit, None]
                seen |= hit
            if not seen.all():  # empty clusters: re-seed on random frames
                empty = np.flatnonzero(~seen)
                centroids[empty] = x[rng.choice(n, size=empty.size, replace=False)]
                counts[empty] = 0.0
                continue
            shift = float(np.max(np.sum((centroids - previous) ** 2, axis=1)))
            if shift <= self.tol * scale:
                break
        self.centroids = centroids.astype(np.float32)
        self.inertia = float(self.score(x))
        return self

    # ------------------------------------------------------------------------- use
    @property
    def dim(self) -> int:
        self._check_fitted()
        return int(self.centroids.shape[1])

    def predict(self, features: np.ndarray) -> np.ndarray:
        """[frames, dims] -> int64 [frames], the nearest centroid of each frame."""
        self._check_fitted()
        x = np.asarray(features, np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must have shape [frames, {self.dim}] for these centroids, got {x.shape}")
        out = np.empty(x.shape[0], np.int64)
        norms = np.einsum("kd,kd->k", self.centroids, self.centroids)
        for start in range(0, x.shape[0], 65536):
            chunk = x[start:start + 65536]
            out[start:start + 65536] = np.argmin(_squared_distances(chunk, self.centroids, norms), axis=1)
        return out

    def score(self, features: np.ndarray) -> float:
        """Inertia: the sum of squared distances of the frames to their nearest centroid."""
        self._check_fitted()
        x = np.asarray(features, np.float32)
        return float(np.min(_squared_distances(x, self.centroids), axis=1).sum())

    # ------------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> str:
        """Writes `path` (`.npz` appended if missing): `centroids` float32 [k, dims] and `metadata`, a JSON
        string (n_clusters, dim, seed, inertia and the user's metadata). Loads without pickle.

        The metadata is serialised first (numpy scalars become Python numbers; anything else that is not
        JSON data raises a ValueError naming it), then the file is written atomically
        (`hubert_tf.files.atomic_write`): a failure leaves any previous file at `path` intact.

        Example:

        >>> import os, tempfile
        >>> km = KMeans(2).fit(np.array([[0.0], [0.1], [5.0], [5.1]]))
        >>> path = km.save(os.path.join(tempfile.mkdtemp(), "km"))
        >>> KMeans.load(path).n_clusters, path.endswith(".npz")
        (2, True)
        """
        from ..files import atomic_write
        from ..processing.feature_extraction import json_text

        self._check_fitted()
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        info = {"format_version": FORMAT_VERSION, "n_clusters": self.n_clusters, "dim": self.dim,
                "seed": self.seed, "inertia": self.inertia, **self.metadata}
        metadata = np.array(json_text(info, f"{path} metadata"))
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with atomic_write(path, "wb") as f:
            np.savez(f, centroids=self.centroids, metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "KMeans":
        """Reads a file written by `save` (or any `.npz` with `centroids`, or a `.npy` of centroids)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no k-means file at {path}")
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path}: not a k-means file written by KMeans.save ({e})") from None
        if isinstance(data, np.ndarray):
            centroids, info = data, {}
        else:
            with data:
                if "centroids" not in data.files:
                    raise ValueError(f"{path}: no 'centroids' array (found {data.files})")
                centroids = data["centroids"]
                info = loads_json(str(data["metadata"]), f"{path} metadata") if "metadata" in data.files else {}
        if not isinstance(info, dict):
            raise ValueError(f"{path}: metadata must be a JSON object, got {type(info).__name__}")
        if centroids.ndim != 2:
            raise ValueError(f"{path}: centroids must have shape [n_clusters, dims], got {centroids.shape}")
        metadata = {k: v for k, v in info.items()
                    if k not in ("format_version", "n_clusters", "dim", "seed", "inertia")}
        km = cls(centroids.shape[0], seed=info.get("seed", 0), metadata=metadata)
        km.centroids = centroids.astype(np.float32)
        km.inertia = info.get("inertia")
        return km

    def _check_fitted(self):
        if self.centroids is None:
            raise ValueError("this KMeans is not fitted: call fit() or KMeans.load() first")

    def __repr__(self):
        shape = None if self.centroids is None else tuple(self.centroids.shape)
        return f"KMeans(n_clusters={self.n_clusters}, centroids={shape}, metadata={self.metadata})"


def _stack(features) -> np.ndarray:
    if isinstance(features, np.ndarray):
        x = features
    else:
        parts = [np.asarray(f) for f in features]
        if not parts:
            raise ValueError("no features to fit on")
        x = np.concatenate(parts, axis=0)
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must have shape [frames, dims], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinity")
    return x


def fit_kmeans(features, n_clusters: int, seed: int = 0, **kwargs) -> KMeans:
    """`KMeans(n_clusters, seed=seed, **kwargs).fit(features)`; features [frames, dims] or a list of them."""
    return KMeans(n_clusters, seed=seed, **kwargs).fit(features)


def load_kmeans(path: str | os.PathLike) -> KMeans:
    """`KMeans.load(path)`."""
    return KMeans.load(path)
