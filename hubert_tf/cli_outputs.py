"""Where `hubert-tf` commands write: one output-path plan per command run, decided before any compute.

`plan_outputs` decides between standard output, one file for all inputs, and one file per input in a
directory; it refuses impossible requests up front (several inputs into one `.npy`, an output that is
an input), creates missing parent directories up front, and gives every input a distinct output name:
base names when they are unique, otherwise the inputs' paths relative to their common directory
(`a/x.wav`, `b/x.wav` -> `OUT/a/x.srt`, `OUT/b/x.srt`), with the extension kept only if still needed.
"""

from __future__ import annotations

import os
import json
import sys
from dataclasses import dataclass, field

STDOUT, FILE, DIRECTORY = "stdout", "file", "directory"


@dataclass
class OutputPlan:
    """Where a command's results go.

    Attributes:
        mode: "stdout", "file" (one file for all inputs) or "directory" (one file per input).
        path: the output file or directory (None for stdout).
        per_input: in directory mode, {input path: its output file}.
    """

    mode: str
    path: str | None = None
    per_input: dict = field(default_factory=dict)


def _collisions(names, inputs) -> list[list[str]]:
    groups: dict = {}
    for name, path in zip(names, inputs):
        groups.setdefault(name, []).append(path)
    return [paths for paths in groups.values() if len(paths) > 1]


def input_keys(inputs, keep_extension: bool) -> list[str]:
    """A distinct name per input, for output files or dataset keys: the base name when base names are
    unique, else the path relative to the inputs' common directory (`/` separated); the extension is
    dropped unless `keep_extension` (and kept anyway when dropping it would make two names equal).

    Raises:
        ValueError: the same file is given twice (named).

    Example:

    >>> input_keys(["a/x.wav", "b/x.wav", "b/y.wav"], keep_extension=False)
    ['a/x', 'b/x', 'b/y']
    >>> input_keys(["x.wav", "x.flac"], keep_extension=False)
    ['x.wav', 'x.flac']
    """
    inputs = [os.fspath(p) for p in inputs]
    absolute = [os.path.abspath(p) for p in inputs]
    root = os.path.commonpath([os.path.dirname(p) for p in absolute]) if absolute else ""
    relative = [os.path.relpath(p, root).replace(os.sep, "/") for p in absolute]
    base = [os.path.basename(p) for p in absolute]
    levels = [base, relative] if keep_extension else [
        [os.path.splitext(n)[0] for n in base], [os.path.splitext(n)[0] for n in relative], relative]
    for names in levels:
        if not _collisions(names, inputs):
            return names
    same = _collisions(levels[-1], inputs)[0]
    raise ValueError(f"the same file is given twice ({' and '.join(same)}): give each input once")


def _ensure_directory(directory: str, what: str) -> None:
    """Creates `directory` (and its parents) now, or says in one line why it cannot be written."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(f"{what} is not a directory ({directory})")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create the output directory: {error.strerror} ({directory})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to the output directory ({directory})")


def plan_outputs(inputs, output: str | None, *, suffix: str, one_file_for_all: bool,
                 default: str = STDOUT, directory: bool | None = None) -> OutputPlan:
    """The output plan of a command over `inputs`, decided (and its directories created) up front.

    Args:
        inputs: the input paths.
        output: the `-o` argument: None, "-" (standard output), a file, or a directory (an existing one,
            one ending in "/", or any path when several inputs need one file each).
        suffix: what each per-input file name ends with (".srt", ".layer6.npy").
        one_file_for_all: whether one file can hold the results of several inputs (text, JSON, HDF5);
            when False, several inputs need a directory.
        default: where results go without `-o`: "stdout", or a directory path (such as ".").
        directory: True when `-o` always names a directory; None decides from the path and the inputs.

    Returns:
        An `OutputPlan`.

    Raises:
        ValueError: several inputs into one file that holds one (e.g. `-o f.npy`), no `-o` when several
            inputs need a directory, an output that is also an input, or the same input twice.
        OSError: the output directory cannot be created or written.

    Example:

    >>> plan_outputs(["a.wav"], "-", suffix=".srt", one_file_for_all=False).mode
    'stdout'
    """
    inputs = [os.fspath(p) for p in inputs]
    if output is None and default != STDOUT:
        output = default
    if output is None or output == "-":
        if not one_file_for_all and len(inputs) > 1:
            raise ValueError(f"{len(inputs)} inputs make {len(inputs)} '{suffix}' files: give -o DIRECTORY")
        return OutputPlan(STDOUT)
    output = os.fspath(output)
    as_directory = directory or os.path.isdir(output) or output.endswith(("/", os.sep)) or (
        not one_file_for_all and len(inputs) > 1)
    if as_directory and not os.path.isdir(output) and output.endswith(suffix.rsplit(".", 1)[-1]) \
            and "." in os.path.basename(output):
        raise ValueError(f"-o {output} names one file but {len(inputs)} inputs were given: "
                         f"give -o DIRECTORY (one {suffix} file per input)")
    resolved = {os.path.realpath(p) for p in inputs}
    if as_directory:
        _ensure_directory(output, "-o")
        names = input_keys(inputs, keep_extension=False)
        per_input = {p: os.path.join(output, *n.split("/")) + suffix for p, n in zip(inputs, names)}
        for target in per_input.values():
            if os.path.realpath(target) in resolved:
                raise ValueError(f"the output would overwrite an input ({target})")
            _ensure_directory(os.path.dirname(target), "-o")
        return OutputPlan(DIRECTORY, output, per_input)
    if os.path.realpath(output) in resolved:
        raise ValueError(f"the output would overwrite an input ({output})")
    _ensure_directory(os.path.dirname(os.path.abspath(output)), "the parent of -o")
    return OutputPlan(FILE, output)


def _json_default(value):
    """numpy scalars and arrays (scores, timestamps) as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def to_json(value, **kwargs) -> str:
    """`json.dumps` that also takes numpy values; non-ASCII text is kept as is."""
    return json.dumps(value, ensure_ascii=False, default=_json_default, **kwargs)


class ResultWriter:
    """Writes per-file results as each file finishes, following an `OutputPlan`.

    Formats: "json" (one JSON document: the object of the one input, or a list of objects
    `{"file", ...}` for several, written when all are done), "jsonl" (one object per line, written as
    each file finishes), and text formats rendered by `render(path, record, with_path)` (`with_path`:
    several inputs share one output, so each result says its file). A file output is written atomically:
    a run that stops on an error leaves no output file (and any older one untouched).

    Args:
        plan: the `OutputPlan`.
        fmt: "json", "jsonl" or a text format name.
        render: the text renderer (unused for json/jsonl).
        several: whether several inputs were given (a JSON list, and `with_path` for text).
    """

    def __init__(self, plan: OutputPlan, fmt: str, render=None, several: bool = False):
        self.plan, self.fmt, self.render, self.several = plan, fmt, render, several
        self.records: list = []
        self._atomic = self._file = None

    def __enter__(self):
        if self.plan.mode == FILE:
            from .files import atomic_write

            self._atomic = atomic_write(self.plan.path, "w")
            self._file = self._atomic.__enter__()
        elif self.plan.mode == STDOUT:
            self._file = sys.stdout
        return self

    def _text(self, path, record, with_path) -> str:
        if self.fmt == "json":
            return to_json({"file": path, **record}, indent=2) + "\n"
        if self.fmt == "jsonl":
            return to_json({"file": path, **record}) + "\n"
        return self.render(path, record, with_path)

    def add(self, path: str, record: dict) -> None:
        """Writes (or, for one JSON document, keeps) the result `record` of input `path`."""
        if self.plan.mode == DIRECTORY:
            from .files import atomic_write

            with atomic_write(self.plan.per_input[path], "w") as f:
                f.write(self._text(path, record, False))
            return
        if self.fmt == "json":
            self.records.append({"file": path, **record})
            return
        self._file.write(self._text(path, record, self.several))
        self._file.flush()

    def __exit__(self, kind, error, traceback):
        if kind is None and self.fmt == "json" and self.plan.mode != DIRECTORY:
            if self.several:
                self._file.write(to_json(self.records, indent=2) + "\n")
            elif self.records:
                self._file.write(to_json(self.records[0], indent=2) + "\n")
            self._file.flush()
        if self._atomic is not None:
            return self._atomic.__exit__(kind, error, traceback)
        return False
