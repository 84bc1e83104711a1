"""What every `hubert-tf` command shares: the common options, quiet TensorFlow start-up, one-line errors,
input-file checks, the progress bar and the file-by-file runner.

Nothing here imports TensorFlow, numpy or tqdm at module level: `hubert-tf --help` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .errors import one_line as error_message  # one clean line per error, Keras' wrapper removed

EXIT_ERROR = 1


class CommandError(Exception):
    """An error whose message is already the one line to show."""


class InputFileError(CommandError, OSError):
    """An input file that cannot be read, shown as `<what> (<file>)`."""

    def __init__(self, what: str, path: str):
        super().__init__(f"{what} ({path})")
        self.what, self.path = what, path


class MissingInputError(InputFileError, FileNotFoundError):
    """An input file that does not exist."""


# ----------------------------------------------------------------------------------------- options
def common_options() -> argparse.ArgumentParser:
    """The parent parser of every command: --quiet, --debug, --progress (help shown in each command).

    Example:

    >>> p = argparse.ArgumentParser(parents=[common_options()])
    >>> p.parse_args(["-q"]).quiet
    True
    """
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bar")
    group.add_argument("--progress", action="store_true", default=argparse.SUPPRESS,
                       help="show the progress bar even when stderr is not a terminal")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="TensorFlow's log lines and the full traceback on errors")
    return common


def per_file_options() -> argparse.ArgumentParser:
    """The parent parser of commands that run on audio files: --skip-errors."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--skip-errors", action="store_true",
                         help="go on past files that fail (one line each on stderr; exit status 1 at the end)")
    return options


# ----------------------------------------------------------------------------------------- TensorFlow
@contextlib.contextmanager
def _stderr_to_devnull():
    """Points file descriptor 2 at /dev/null: TensorFlow's C++ start-up lines (written before absl's
    logging is initialised, so TF_CPP_MIN_LOG_LEVEL does not reach them) go nowhere."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow(debug: bool = False) -> None:
    """Imports TensorFlow without its start-up noise (C++ log level 3, no oneDNN/CUDA probing lines, absl
    and TF Python loggers at ERROR) unless `debug`. Call it after the cheap up-front checks (importing
    TensorFlow takes seconds) and before anything imports TensorFlow. A log level the user set in the
    environment is kept.
    """
    if debug or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    try:
        with _stderr_to_devnull():
            import tensorflow as tf
    except ImportError:
        return  # the command's own import reports it, with the message
    tf.get_logger().setLevel("ERROR")
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)


# ----------------------------------------------------------------------------------------- errors
def about_file(error: BaseException, path: str) -> str:
    """The one-line message of `error` raised while processing `path`, as `<what> (<path>)`.

    Example:

    >>> about_file(ValueError("x.wav: not an audio file"), "x.wav")
    'not an audio file (x.wav)'
    """
    message = error_message(error)
    for prefix in (f"{path}: ", f"{path!r}: "):
        if message.startswith(prefix):
            return f"{message[len(prefix):]} ({path})"
    return message if path in message else f"{message} ({path})"


def print_error(message: str) -> None:
    print(f"hubert-tf: error: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- inputs
def check_input_files(paths, skip_errors: bool = False) -> list[str]:
    """The paths that are readable files, checked before any model loads.

    Without `skip_errors` the first bad path raises `InputFileError`; with it each bad path is reported
    on stderr (one line) and dropped: the caller counts `len(paths) - len(result)` failures.
    """
    good = []
    for path in paths:
        if not os.path.exists(path):
            problem = "no such file"
        elif os.path.isdir(path):
            problem = "is a directory, expected an audio file"
        elif not os.access(path, os.R_OK):
            problem = "permission denied"
        else:
            good.append(path)
            continue
        if not skip_errors:
            raise (MissingInputError if problem == "no such file" else InputFileError)(problem, path)
        print_error(f"{problem} ({path})")
    return good


def audio_seconds(path: str) -> float:
    """The duration in a file's header (0.0 when the header cannot be read: decoding will tell)."""
    try:
        import soundfile

        return float(soundfile.info(path).duration)
    except Exception:  # noqa: BLE001 - unreadable files fail later, with their own message
        return 0.0


# ----------------------------------------------------------------------------------------- progress
def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def show_progress(args) -> bool:
    """Whether to draw a bar: --progress forces it; --quiet or a non-terminal stderr hide it."""
    if getattr(args, "progress", False):
        return True
    return not getattr(args, "quiet", False) and _stderr_is_terminal()


class AudioProgress:
    """A tqdm bar on stderr counting seconds of audio processed over a list of files.

    The total is the files' header durations; when a file is decoded its real length replaces its
    estimate. `callback(samples)` is the `progress=` the pipelines call after each batch (the samples
    whose frames the batch finished: overlapping chunk context is not counted); `finish_file()` puts the
    count at the exact end of the file, so the bar reaches 100 % exactly when the last file is done.

    Example:

    >>> bar = AudioProgress({"a.wav": 2.0}, "x", enabled=False)
    >>> bar.start_file("a.wav", 32000, 16000); bar.callback(16000); round(bar.bar.n, 3)
    1.0
    >>> bar.finish_file(); bar.close(); (bar.bar.n, bar.bar.total)
    (2.0, 2.0)
    """

    def __init__(self, durations: dict, label: str, enabled: bool = True):
        from tqdm import tqdm  # imported here: `hubert-tf --help` needs no tqdm

        self.durations = dict(durations)
        self.done_s = 0.0  # seconds of the files finished
        self.current_s, self.rate = 0.0, 16000
        self.bar = tqdm(total=sum(self.durations.values()), desc=label, unit="s", file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True, mininterval=0.2,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio "
                                   "[{elapsed}<{remaining}]")

    def _show(self, n: float) -> None:
        self.bar.n = min(n, self.bar.total)
        self.bar.update(0)  # redraws (a no-op when disabled)

    def start_file(self, path: str, samples: int, rate: int) -> None:
        """`path` was decoded to `samples` at `rate`: its real duration replaces the header's."""
        self.rate, self.current_s = rate, samples / rate
        self.bar.total += self.current_s - self.durations.pop(path, 0.0)
        self._base = self.done_s

    def callback(self, samples) -> None:
        self.bar.n = min(self.bar.n + int(samples) / self.rate, self._base + self.current_s)
        self.bar.update(0)

    def finish_file(self) -> None:
        """The current file is done (or failed): the count moves to its end."""
        self.done_s = self._base + self.current_s
        self._show(self.done_s)

    def skip_file(self, path: str) -> None:
        """`path` failed before decoding: its estimate leaves the total."""
        self.bar.total -= self.durations.pop(path, 0.0)
        self._show(self.done_s)

    def close(self) -> None:
        self.bar.total = self.done_s  # exactly 100 % at the end
        self._show(self.done_s)
        self.bar.close()

    _base = 0.0


# ----------------------------------------------------------------------------------------- runner
class FileRunner:
    """Runs a command over audio files one at a time: decode, run, hand back the result as each file
    finishes (the caller writes it right away), with a progress bar and --skip-errors.

    Args:
        paths: the input files (already checked by `check_input_files`).
        args: the parsed command line (reads quiet/progress/skip_errors).
        label: the bar's text.
        rate: the sampling rate the audio is decoded at.

    Usage:

        runner = FileRunner(paths, args, "transcribing", 16000)
        for path, result in runner.run(lambda audio, progress: work(audio, progress)):
            write(path, result)
        return runner.exit_status()
    """

    def __init__(self, paths, args, label: str, rate: int, failed: int = 0):
        self.paths, self.rate, self.failed = list(paths), int(rate), failed
        self.skip_errors = bool(getattr(args, "skip_errors", False))
        enabled = show_progress(args)
        self.progress = AudioProgress({p: audio_seconds(p) for p in self.paths} if enabled else {}, label, enabled)

    def decode(self, path: str):
        from .processing import load_audio

        return load_audio(path, sampling_rate=self.rate)

    def run(self, work):
        """Yields `(path, work(audio, progress_callback))` per file; failures raise (naming the file)
        or, with --skip-errors, print one line and are counted."""
        try:
            for path in self.paths:
                try:
                    audio = self.decode(path)
                except Exception as error:  # noqa: BLE001 - named and reported per file
                    self.progress.skip_file(path)
                    self._failed(error, path)
                    continue
                self.progress.start_file(path, audio.size, self.rate)
                try:
                    result = work(audio, self.progress.callback)
                except Exception as error:  # noqa: BLE001
                    self.progress.finish_file()
                    self._failed(error, path)
                    continue
                self.progress.finish_file()
                yield path, result
        finally:
            self.progress.close()

    def _failed(self, error: Exception, path: str) -> None:
        if not self.skip_errors:
            raise CommandError(about_file(error, path)) from error
        self.failed += 1
        self.progress.bar.clear()  # the error line goes above the bar, not into it
        print_error(about_file(error, path))
        self.progress.bar.refresh()

    def exit_status(self) -> int:
        return EXIT_ERROR if self.failed else 0


class Stages:
    """Progress of a command made of a few long steps (export): `[i/n] what ... done (1.2 s)` lines on
    stderr, shown as the progress bar is (terminal or --progress, not --quiet).

    Example:

    >>> import argparse
    >>> stages = Stages(argparse.Namespace(quiet=True), 1)
    >>> with stages.stage("exporting"):
    ...     pass
    """

    def __init__(self, args, total: int):
        self.enabled, self.total, self.count = show_progress(args), total, 0

    @contextlib.contextmanager
    def stage(self, what: str):
        import time

        self.count += 1
        start = time.perf_counter()
        if self.enabled:
            print(f"[{self.count}/{self.total}] {what} ...", file=sys.stderr, flush=True)
        yield
        if self.enabled:
            print(f"[{self.count}/{self.total}] {what}: done ({time.perf_counter() - start:.1f} s)", file=sys.stderr,
                  flush=True)


class _DropUnusedHeadNotice:
    """A logging filter dropping the loader's "Some weights of ... were not used" notice."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("Some weights of")


@contextlib.contextmanager
def body_only_loading(debug: bool = False):
    """While a checkpoint with a head (a CTC or classification model) is loaded as the bare body for its
    features (`features`, `units`, `kmeans`), the notice that the head's weights were not used is not
    shown: dropping them is what was asked. Shown with --debug."""
    import logging

    logger, notice = logging.getLogger("hubert_tf"), _DropUnusedHeadNotice()
    if not debug:
        logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)
