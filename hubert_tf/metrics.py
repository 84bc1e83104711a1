"""Speech-recognition error rates: word error rate (WER) and character error rate (CER).

Both are corpus-level, as `jiwer` and the usual evaluation scripts compute them: the edit operations of
all utterances (substitutions + deletions + insertions) divided by the number of reference words
(characters) of all utterances, not an average of per-utterance rates. Texts are compared as given;
normalise case and punctuation first if they should not count.
"""

from __future__ import annotations

from typing import Sequence


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance: the fewest substitutions, deletions and insertions turning `reference` into
    `hypothesis` (sequences of words, characters or ids).

    Example:

    >>> edit_distance("kitten", "sitting")
    3
    >>> edit_distance(["a", "cat"], ["the", "cat", "sat"])
    2
    """
    reference, hypothesis = list(reference), list(hypothesis)
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, 1):
        current = [i]
        for j, hyp_item in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item)))
        previous = current
    return previous[-1]


def _error_rate(references, hypotheses, split, unit):
    if isinstance(references, str):
        references = [references]
    if isinstance(hypotheses, str):
        hypotheses = [hypotheses]
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} references but {len(hypotheses)} hypotheses")
    errors = total = 0
    for reference, hypothesis in zip(references, hypotheses):
        if not isinstance(reference, str) or not isinstance(hypothesis, str):
            raise TypeError("references and hypotheses must be strings (or lists of strings)")
        ref_units, hyp_units = split(reference), split(hypothesis)
        errors += edit_distance(ref_units, hyp_units)
        total += len(ref_units)
    if total == 0:
        raise ValueError(f"the references hold no {unit}s: the error rate is undefined")
    return errors / total


def word_error_rate(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Corpus word error rate: word-level edit operations / reference words (can exceed 1.0).

    Args:
        references: the true transcript, or a list of them.
        hypotheses: the recognised transcript(s), one per reference.

    Returns:
        float. 0.0 is perfect.

    Raises:
        ValueError: different numbers of references and hypotheses, or no reference words at all.

    Example:

    >>> word_error_rate(["the cat sat", "hello"], ["the cat sat down", "yellow"])
    0.5
    """
    return _error_rate(references, hypotheses, str.split, "word")


def character_error_rate(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Corpus character error rate: character edit operations / reference characters (spaces count).

    Example:

    >>> character_error_rate("hello world", "hallo world")
    0.09090909090909091
    """
    return _error_rate(references, hypotheses, list, "character")
