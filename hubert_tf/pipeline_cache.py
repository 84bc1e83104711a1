"""The pipelines' cache of loaded models and processors: `transcribe("a.wav", "my_model")` called again with
the same model directory or hub id reuses the model it loaded the first time, and with it the compiled
graphs cached on the model (`hubert_tf.modeling.inference`), instead of reloading and retracing.

Entries are keyed by what was loaded and how: the class, the global Keras dtype policy, and for a local
directory its real path plus the size and modification time of every file in it (rewriting the
checkpoint or its config gives a new entry); a hub id is keyed by its name (its files are fixed for the
life of the process, as a transformers `pipeline` object keeps its model). The cache keeps the
`MAX_ENTRIES` most recently used entries (a large model is ~1.2 GB); `clear()` empties it.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any, Callable

MAX_ENTRIES = 4

_entries: "collections.OrderedDict[tuple, Any]" = collections.OrderedDict()
_lock = threading.Lock()


def _dtype_policy() -> str:
    import keras

    return keras.config.dtype_policy().name


def source_key(source: str) -> tuple:
    """What identifies the files behind `source`: (real path, ((file, size, mtime_ns), ...)) for a local
    directory (its top level and one level of subfolders such as `language_model/`), (source,) for a hub
    id or anything else."""
    if not os.path.isdir(source):
        return (source,)
    root = os.path.realpath(source)
    files = []
    for folder, subfolders, names in os.walk(root):
        if folder != root:
            subfolders[:] = []  # one level down is enough: checkpoints keep their files at the top
        for name in sorted(names):
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # removed meanwhile: the key still differs from the old one
                continue
            files.append((os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns))
    return (root, tuple(sorted(files)))


def load(kind: type, source: str, loader: Callable[[str], Any] | None = None) -> Any:
    """`kind.from_pretrained(source)` (or `loader(source)`), loaded once and reused while its files are
    unchanged.

    Args:
        kind: the class to load (a model or processor class); part of the key.
        source: a local directory or a hub id.
        loader: optional callable making the object from `source`; defaults to `kind.from_pretrained`.

    Returns:
        The loaded object (the same object on later calls with an unchanged source). A failed load is not
        cached: the next call tries again.

    Example:

    >>> from hubert_tf import TFHubertForCTC
    >>> model = load(TFHubertForCTC, "models/tiny")  # doctest: +SKIP
    >>> load(TFHubertForCTC, "models/tiny") is model  # doctest: +SKIP
    True
    """
    key = (f"{kind.__module__}.{kind.__qualname__}", _dtype_policy(), source_key(source))
    with _lock:
        if key in _entries:
            _entries.move_to_end(key)
            return _entries[key]
    # Loaded outside the lock: a slow download must not block other threads' cached look-ups. Two
    # threads loading the same new source both load it; the first one stored wins.
    value = (loader or kind.from_pretrained)(source)
    with _lock:
        value = _entries.setdefault(key, value)
        _entries.move_to_end(key)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return value


def clear() -> None:
    """Empties the cache (the models are freed once nothing else refers to them)."""
    with _lock:
        _entries.clear()


def size() -> int:
    """Entries held now."""
    with _lock:
        return len(_entries)
