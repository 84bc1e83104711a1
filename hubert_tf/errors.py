"""What an error says, in one line: the message a layer raised, out of Keras' wrapper.

Keras 3 re-raises an exception from a layer's `call` as a new one of the same type whose message is
"Exception encountered when calling X.call().\\n\\n\\x1b[1m<original>\\x1b[0m\\n\\nArguments received by ..."
(keras/src/utils/traceback_utils.py). The model's `__call__` re-raises the original message, and the
CLI prints one line, both through `original_message`. No TensorFlow import: the CLI reports errors
that happen before TensorFlow is loaded.
"""

from __future__ import annotations

import re

_KERAS_WRAPPED = re.compile(
    r"\AException encountered when calling [^\n]*\n\n(?:\x1b\[1m)?(.*?)(?:\x1b\[0m)?(?:\n\nArguments received.*)?\Z",
    re.DOTALL)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def original_message(text: str) -> str | None:
    """The message a layer raised, from the text of Keras' call() wrapper; None when `text` is not one.

    Example:

    >>> original_message("Exception encountered when calling Foo.call().\\n\\n\\x1b[1mbad shape\\x1b[0m\\n\\n"
    ...                  "Arguments received by Foo.call(): x=tf.Tensor(...)")
    'bad shape'
    >>> original_message("bad shape") is None
    True
    """
    match = _KERAS_WRAPPED.match(text)
    return None if match is None else match.group(1)


def one_line(error: BaseException) -> str:
    """`error` as one clean line: Keras' wrapper removed (nested ones too), ANSI escapes stripped, the
    first non-empty line; the exception's type name when nothing is left.

    Example:

    >>> one_line(ValueError("Exception encountered when calling Foo.call().\\n\\n\\x1b[1mbad shape\\x1b[0m"))
    'bad shape'
    """
    text = str(error)
    while (inner := original_message(text)) is not None:
        text = inner
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
