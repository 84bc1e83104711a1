"""Files the library reads and writes: crash-safe writes and bounded JSON.

Writes: a failure mid-save never leaves a half-written file under a final name.

Every file is written to a temporary sibling (same directory, so the final rename stays on one
file system), flushed and fsync'ed, and only then moved over the final name with
``os.replace``, which is atomic on POSIX and Windows. On any exception the temporary file is
removed and whatever file had the final name before is left untouched.
"""

import contextlib
import json
import os
import secrets

__all__ = ["atomic_write", "atomic_files", "AtomicFileSet", "read_json", "loads_json", "MAX_JSON_DEPTH",
           "MAX_JSON_BYTES"]

# JSON the library reads (config.json, vocab.json, preprocessor_config.json, index files, headers) is
# never legitimately nested deeper than a handful of levels; Python's parser recurses per level, so a
# hostile file could otherwise raise RecursionError (or worse, in C) instead of a ValueError.
MAX_JSON_DEPTH = 64
# No config, vocabulary or index of a real checkpoint comes near this (the largest vocab.json of the
# MMS models is ~2 MB); reading more would be a memory bomb.
MAX_JSON_BYTES = 64 * 1024 * 1024


_JSON_STRING = None


def _json_depth_ok(text: str, limit: int) -> bool:
    """True when brackets outside strings never nest deeper than `limit` (regex + cumsum, no recursion,
    linear in the text)."""
    global _JSON_STRING
    import re

    import numpy as np

    if _JSON_STRING is None:
        _JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
    if text.count("[") + text.count("{") <= limit:
        return True
    structure = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    codes = np.frombuffer(structure, np.uint8)
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int32)
             - np.isin(codes, (ord("]"), ord("}"))).astype(np.int32))
    return not steps.size or int(np.cumsum(steps).max()) <= limit


def loads_json(text, source: str, *, max_depth: int = MAX_JSON_DEPTH, object_pairs_hook=None):
    """Parses JSON text (str or bytes) from `source` (named in every error).

    Raises:
        ValueError: "<source>: ..." for invalid UTF-8, invalid JSON or nesting deeper than `max_depth`.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{source}: not UTF-8 text ({error})") from None
    if not _json_depth_ok(text, max_depth):
        raise ValueError(f"{source}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: invalid JSON ({error})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise ValueError(f"{source}: JSON nested too deeply") from None


def read_json(path, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH, object_pairs_hook=None):
    """Reads a JSON file of at most `max_bytes`, nested at most `max_depth` deep.

    Raises:
        OSError: the file cannot be read.
        ValueError: "<path>: ..." when it is too large, not UTF-8, not JSON or nested too deeply.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "config.json")
    >>> with atomic_write(path, "w") as f:
    ...     _ = f.write('{"a": [1, 2]}')
    >>> read_json(path)
    {'a': [1, 2]}
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{path}: larger than {max_bytes} bytes, not a JSON file this library reads")
    return loads_json(data, path, max_depth=max_depth, object_pairs_hook=object_pairs_hook)

_TEXT_MODES = ("w", "wt")
_BINARY_MODES = ("wb",)


def _open_temp_sibling(path):
    """Create and open (O_EXCL) a fresh hidden temporary file next to ``path``.

    The file is created with mode 0o666 so the process umask applies, exactly as for a
    plain ``open(path, "w")`` (``tempfile.mkstemp`` would force 0o600).
    """
    directory, name = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


def _fsync_directory(directory):
    # Makes the rename itself durable. Not possible on Windows (and some file systems);
    # the rename is still atomic there, only not yet flushed.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_mode(mode):
    if mode not in _TEXT_MODES + _BINARY_MODES:
        raise ValueError(f"atomic writes support modes 'w' and 'wb', got {mode!r}")


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding="utf-8", newline=None):
    """Open ``path`` for writing so that it only ever holds a complete file.

    Args:
        path: str or os.PathLike. The final file name.
        mode: str. ``"wb"`` (binary) or ``"w"`` (text). Defaults to ``"wb"``.
        encoding: str. Text encoding for ``"w"``. Defaults to ``"utf-8"``.
        newline: str or None. As for :func:`open` in text mode. Defaults to ``None``.

    Yields:
        The open file object of a temporary file in the same directory. When the block ends
        normally it is flushed, fsync'ed and renamed to ``path`` (replacing any old file);
        when the block raises, the temporary file is deleted and ``path`` is untouched.

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "config.json")
    >>> with atomic_write(target, "w") as f:
    ...     _ = f.write("{}")
    >>> open(target).read()
    '{}'
    """
    _check_mode(mode)
    path = os.fspath(path)
    temp, fd = _open_temp_sibling(path)
    try:
        if mode in _BINARY_MODES:
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        _remove_quietly(temp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        _remove_quietly(temp)
        raise
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


class AtomicFileSet:
    """Stage several files in one directory and move them into place only if all succeed.

    Use it through :func:`atomic_files`. Files are committed (renamed over their final names)
    in the order they were first staged, so stage an index file last: a reader then never
    sees an index that points at shards which are not yet in place. Each rename is atomic;
    the set as a whole is not (a crash between two renames can leave some new and some old
    files), but no file under a final name is ever half written.
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self._staged = {}  # final path -> temporary path, in staging order
        self._modes = {}  # temporary path -> permission bits it was created with (umask applied)
        self._to_remove = []

    def _final_path(self, name):
        if os.path.isabs(name) or os.path.dirname(os.path.normpath(name)):
            raise ValueError(f"staged file names must be plain names inside {self.directory}, got {name!r}")
        return os.path.join(self.directory, name)

    def _stage(self, name):
        final = self._final_path(name)
        if final in self._staged:
            raise ValueError(f"{name!r} is already staged in {self.directory}")
        temp, fd = _open_temp_sibling(final)
        self._staged[final] = temp
        return temp, fd

    def open(self, name, mode="wb", encoding="utf-8", newline=None):
        """Open a temporary file that will become ``directory/name`` on commit.

        Args:
            name: str. A plain file name (no directories).
            mode: str. ``"wb"`` or ``"w"``. Defaults to ``"wb"``.
            encoding: str. Text encoding for ``"w"``. Defaults to ``"utf-8"``.
            newline: str or None. As for :func:`open`. Defaults to ``None``.

        Returns:
            A file object; close it (or use it in a ``with`` block) before the set commits.
        """
        _check_mode(mode)
        _, fd = self._stage(name)
        if mode in _BINARY_MODES:
            return os.fdopen(fd, "wb")
        return os.fdopen(fd, "w", encoding=encoding, newline=newline)

    def path(self, name):
        """Return a temporary path that will become ``directory/name`` on commit.

        For writers that only accept a file name (h5py, a third-party library). The file
        exists and is empty; the writer may overwrite or replace it.
        """
        temp, fd = self._stage(name)
        self._modes[temp] = os.fstat(fd).st_mode & 0o777
        os.close(fd)
        return temp

    def remove_on_commit(self, name):
        """Delete ``directory/name`` (if present) after all staged files are in place.

        For stale files of an older save, e.g. ``model-00003-of-00003.safetensors`` when the
        new save has only two shards.
        """
        self._to_remove.append(self._final_path(name))

    def _commit(self):
        for temp in self._staged.values():
            # Data of files written through .path() by other libraries may still be in the
            # page cache only; fsync every staged file before the first rename.
            fd = os.open(temp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for temp, mode in self._modes.items():
            # Writers that replace the file (safetensors writes its own temporary file and renames
            # it over ours) leave mkstemp's 0600: give it the umask's mode, as open() would.
            if os.stat(temp).st_mode & 0o777 != mode:
                os.chmod(temp, mode)
        committed = set()
        for final, temp in list(self._staged.items()):
            os.replace(temp, final)
            committed.add(final)
            del self._staged[final]
        for final in self._to_remove:
            if final not in committed:  # a name both staged and marked stale stays
                _remove_quietly(final)
        _fsync_directory(self.directory)

    def _abort(self):
        for temp in self._staged.values():
            _remove_quietly(temp)
        self._staged.clear()


@contextlib.contextmanager
def atomic_files(directory):
    """Write several files into ``directory`` so a failure leaves the previous files intact.

    Args:
        directory: str or os.PathLike. Existing target directory.

    Yields:
        An :class:`AtomicFileSet`. Stage files with ``.open(name)`` / ``.path(name)``; when
        the block ends normally every staged file is fsync'ed, then renamed over its final
        name in staging order, then files marked with ``.remove_on_commit`` are deleted. If
        the block raises, every temporary file is deleted and the directory is unchanged.

    Example:

    >>> import os, tempfile
    >>> out = tempfile.mkdtemp()
    >>> with atomic_files(out) as files:
    ...     with files.open("a.bin") as f:
    ...         _ = f.write(b"shard")
    ...     with files.open("index.json", "w") as f:
    ...         _ = f.write("{}")
    >>> sorted(os.listdir(out))
    ['a.bin', 'index.json']
    """
    fileset = AtomicFileSet(directory)
    try:
        yield fileset
    except BaseException:
        fileset._abort()
        raise
    try:
        fileset._commit()
    except BaseException:
        fileset._abort()
        raise
