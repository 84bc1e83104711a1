"""`save_pretrained`: config.json + model.safetensors (sharded above max_shard_size) in the reference
PyTorch naming and layout, so `transformers.HubertForCTC.from_pretrained(dir)` loads it.

A save never mixes with another one:

* one save at a time per directory: an exclusive lock (`fcntl.flock`, `msvcrt.locking` on Windows) on a
  hidden lock file in the directory, held for the whole save, so two concurrent saves run one after
  the other and the directory ends up holding one of them whole;
* every file is first written complete (and fsync'ed) into a hidden staging directory inside the
  target, then moved into place: the old config.json is moved aside first, the weights next, the new
  config.json last. A crash in between leaves no config.json at all -- the directory does not load,
  loudly -- rather than one save's config beside another's weights. Any exception rolls every moved
  file back, so a failed save leaves the previous checkpoint exactly as it was;
* staging directories and backups of a killed save are removed by the next save (under the lock).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import time

import numpy as np

from ..configuration import CONFIG_NAME
from .formats.safetensors import write_safetensors_to
from .formats.sharding import index_to_json, split_state_dict
from .names import reference_entries

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_INDEX_NAME = "model.safetensors.index.json"
LOCK_NAME = ".hubert_tf-save.lock"
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_STAGING_PREFIX = ".hubert_tf-save-"
# A save's staging directory (also holding the files it replaced): only saves create them, and they
# run under the lock, so any found by a save is a killed save's.
_STAGING = re.compile(r"^\.hubert_tf-save-[0-9a-f]{12}\.tmp$")
# Temp siblings (hubert_tf.files) of the files a save writes, left by older versions' killed saves.
# Other writers (HubertConfig.save_pretrained) make these too, without our lock: only old ones go.
_OLD_TEMP = re.compile(r"^\.(config\.json|model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?)\.[0-9a-f]{12}\.tmp$")
_OLD_TEMP_AGE_S = 3600.0
_LOCK_TIMEOUT_S = 600.0
logger = logging.getLogger("hubert_tf")


def model_state_dict(model) -> dict[str, np.ndarray]:
    """The model's weights as the reference's state dict: {torch key: float32 array in torch layout}."""
    state = {}
    for entry in reference_entries(model):
        value = np.asarray(entry.variable.numpy())
        if value.dtype != np.float32:
            value = value.astype(np.float32)
        state[entry.keys[0]] = entry.to_reference(value)
    for key in [k for k in state if k.endswith(".running_mean")]:
        # torch's BatchNorm buffer; it only counts updates, so 0 is as good as any.
        state[key[: -len("running_mean")] + "num_batches_tracked"] = np.array(0, np.int64)
    return state


def reference_class_name(model) -> str:
    """The transformers class that loads what `model` saves ("TFHubertForCTC" -> "HubertForCTC")."""
    name = type(model).__name__
    return name[2:] if name.startswith("TF") else name


# ------------------------------------------------------------------------------ directory lock


def _lock_fd(fd, path):
    try:
        import fcntl
    except ImportError:  # Windows: msvcrt byte-range lock on the first byte, retried until the timeout
        import msvcrt

        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return lambda: msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            except OSError:
                if time.monotonic() > deadline:
                    raise OSError(f"{path}: another save into this directory holds the lock") from None
                time.sleep(0.05)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as error:
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # Some network file systems have no flock: save unlocked rather than not at all.
        logger.warning("%s: the file system cannot lock (%s); concurrent saves here are not serialised", path, error)
        return lambda: None
    return lambda: fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def directory_lock(directory):
    """Hold an exclusive lock on `directory` for saving (blocks while another save holds it).

    The lock file is removed on release; a waiter that then finds it gone (or replaced) retries on the
    new one, so the lock is never held on an unlinked file. On Windows the lock file may stay behind
    (an open file cannot be removed there); it is harmless.

    Args:
        directory: an existing directory.

    Example:

    >>> import tempfile
    >>> with directory_lock(tempfile.mkdtemp()):
    ...     pass  # write the checkpoint
    """
    path = os.path.join(directory, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            unlock = _lock_fd(fd, path)
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        unlock()
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)  # before unlocking: a waiter then sees the file gone and retries
        unlock()
        os.close(fd)


# ------------------------------------------------------------------------------ writing


def _remove_stale(directory):
    """Staging directories, backups and temp files left by a killed save (we hold the lock)."""
    now = time.time()
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if _STAGING.match(name) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif _OLD_TEMP.match(name):
            with contextlib.suppress(OSError):
                if now - os.lstat(path).st_mtime > _OLD_TEMP_AGE_S:
                    os.remove(path)


def _fsync(path, directory=False):
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # not possible on Windows; the renames are atomic there, only not yet flushed
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _commit(directory, staging, names, stale):
    """Moves `names` (config.json last) from `staging` into `directory`. First the old config.json and
    the `stale` files of an older save (e.g. its model.safetensors, which loading would prefer to a new
    index) go aside into `staging`; on any exception every move is undone."""
    moves = []  # [final, backup or None, placed], undone in reverse

    def move_aside(name):
        final = os.path.join(directory, name)
        move = [final, None, False]
        moves.append(move)
        if os.path.lexists(final):
            move[1] = os.path.join(staging, f"old.{name}")
            os.replace(final, move[1])
        return move

    try:
        config = move_aside(CONFIG_NAME)  # from here on the directory holds no loadable mix
        for name in stale:
            move_aside(name)
        for name in names:
            move = config if name == CONFIG_NAME else move_aside(name)
            os.replace(os.path.join(staging, name), move[0])
            move[2] = True
    except BaseException:
        for final, backup, placed in reversed(moves):
            with contextlib.suppress(OSError):
                if backup is not None and os.path.lexists(backup):
                    os.replace(backup, final)
                elif placed:
                    os.remove(final)
        raise
    _fsync(directory, directory=True)


def save_pretrained(model, save_directory, max_shard_size="5GB", safe_serialization=True) -> None:
    """See `TFHubertPreTrainedModel.save_pretrained`."""
    if not safe_serialization:
        raise ValueError("only safetensors is written (safe_serialization=False is not supported)")
    save_directory = os.fspath(save_directory)
    if os.path.isfile(save_directory):
        raise OSError(f"{save_directory} is a file, expected a directory")
    os.makedirs(save_directory, exist_ok=True)
    config_json = model.config.copy(architectures=[reference_class_name(model)]).to_json_string()
    state = model_state_dict(model)
    shards, index = split_state_dict(state, max_shard_size)
    names = [name for name, _ in shards] + ([SAFE_INDEX_NAME] if index else []) + [CONFIG_NAME]
    with directory_lock(save_directory):
        _remove_stale(save_directory)
        staging = os.path.join(save_directory, f"{_STAGING_PREFIX}{secrets.token_hex(6)}.tmp")
        os.mkdir(staging)
        try:
            for name, shard in shards:
                write_safetensors_to(os.path.join(staging, name), shard, metadata={"format": "pt"})
            if index:
                with open(os.path.join(staging, SAFE_INDEX_NAME), "w", encoding="utf-8", newline="\n") as f:
                    f.write(index_to_json(index))
            with open(os.path.join(staging, CONFIG_NAME), "w", encoding="utf-8") as f:
                f.write(config_json)
            for name in names:
                _fsync(os.path.join(staging, name))
            stale = [f for f in os.listdir(save_directory) if f not in names
                     and (f == SAFE_WEIGHTS_NAME or f == SAFE_INDEX_NAME or _SHARD.match(f))]
            _commit(save_directory, staging, names, stale)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
