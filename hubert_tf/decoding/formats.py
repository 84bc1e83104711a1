"""Writing alignments: Praat TextGrid (word and character tiers); JSON and SRT reuse the CLI's writers."""

from __future__ import annotations


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _tier(name: str, items, duration: float) -> list[str]:
    """An IntervalTier covering [0, duration]: the items' spans, with empty intervals filling the gaps."""
    intervals, at = [], 0.0
    for item in items:
        start, end = item["timestamp"]
        start, end = max(start, at), min(max(end, start), duration)
        if start > at:
            intervals.append((at, start, ""))
        if end > start:
            intervals.append((start, end, item["text"]))
            at = end
    if at < duration:
        intervals.append((at, duration, ""))
    lines = ['        class = "IntervalTier"', f"        name = {_quote(name)}", "        xmin = 0",
             f"        xmax = {duration}", f"        intervals: size = {len(intervals)}"]
    for i, (a, b, text) in enumerate(intervals, 1):
        lines += [f"        intervals [{i}]:", f"            xmin = {a}", f"            xmax = {b}",
                  f"            text = {_quote(text)}"]
    return lines


def to_textgrid(alignment: dict, duration: float) -> str:
    """A Praat TextGrid (long text format) with "words" and "chars" tiers of an `align` result.

    Args:
        alignment: a `hubert_tf.align` result ({"words": [...], "chars": [...]}).
        duration: float. The recording's length in seconds (the tiers' end).

    Example:

    >>> grid = to_textgrid({"words": [{"text": "hi", "timestamp": (0.1, 0.3)}], "chars": []}, 0.5)
    >>> grid.splitlines()[0], 'text = "hi"' in grid
    ('File type = "ooTextFile"', True)
    """
    duration = round(float(duration), 3)
    tiers = [("words", alignment["words"]), ("chars", alignment["chars"])]
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {duration}",
             "tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for i, (name, items) in enumerate(tiers, 1):
        lines.append(f"    item [{i}]:")
        lines += _tier(name, items, duration)
    return "\n".join(lines) + "\n"
