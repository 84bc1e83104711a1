"""The README's offline Quickstart runs as written, against the shipped demo checkpoint.

The snippets are read from README.md, never copied here: every fenced ```bash / ```python block of the
"Try it offline" subsection of "## Quickstart" runs in a subprocess from the repository root (HF hub
offline), and what it prints must be exactly the lines its `# prints ...` comments announce, in order.
The install line (`pip install ...`) is recognised and skipped: CI runs it before the tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DEMO = os.path.join(ROOT, "tests", "fixtures", "demo")
SECTION = "## Quickstart"
RUNNABLE = "### Try it offline"  # the subsection whose snippets run (heading prefix)
PRINTS = re.compile(r"#\s*prints\s+(.+?)\s*$")
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
INSTALL = re.compile(r"^(python3? -m )?pip install\b")
TIMEOUT_S = 120


@dataclass
class Snippet:
    language: str  # "bash" or "python"
    code: str  # what runs (install lines removed)
    expected: list  # the lines it must print
    install: list  # the skipped install commands


def section(text: str, heading: str, level: str) -> str:
    """The body of the first heading starting with `heading`, up to the next heading of `level` or higher."""
    lines, in_code, start = text.splitlines(), False, None
    stops = tuple("#" * n + " " for n in range(1, len(level) + 1))
    for i, line in enumerate(lines):
        in_code ^= line.startswith("```")  # a "# comment" inside a code block is no heading
        if in_code or line.startswith("```"):
            continue
        if start is None and line.startswith(heading):
            start = i + 1
        elif start is not None and line.startswith(stops):
            return "\n".join(lines[start:i])
    assert start is not None, f"README.md has no heading starting {heading!r}"
    return "\n".join(lines[start:])


def is_install(line: str) -> bool:
    """A shell line that installs a package (a `pip install` command anywhere in an `&&` chain)."""
    return any(INSTALL.match(command.strip()) for command in line.split("&&"))


def snippets(text: str) -> list:
    """The runnable snippets of the README's offline Quickstart."""
    offline = section(section(text, SECTION, "##"), RUNNABLE, "###")
    found = []
    for language, code in FENCE.findall(offline):
        assert language in ("bash", "python"), f"unexpected ```{language} block in {RUNNABLE!r}"
        lines = code.splitlines()
        install = [line for line in lines if language == "bash" and is_install(line)]
        kept = [line for line in lines if line not in install]
        expected = [m.group(1) for m in map(PRINTS.search, kept) if m]
        found.append(Snippet(language, "\n".join(kept) + "\n", expected, install))
    return found


def readme_snippets() -> list:
    with open(README, encoding="utf-8") as f:
        return snippets(f.read())


def run(snippet: Snippet) -> subprocess.CompletedProcess:
    """Runs a snippet from the repository root with this interpreter's environment first on PATH."""
    # Offline for real: the hub is told so, and any other connection goes to a closed local port.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "NO_PROXY": "", "no_proxy": "",
           **{name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    if snippet.language == "bash":
        assert shutil.which("hubert-tf", path=env["PATH"]), "no hubert-tf console script: run `pip install -e .`"
        argv = ["bash", "-euo", "pipefail", "-c", snippet.code]
    else:
        argv = [sys.executable, "-c", snippet.code]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_parser_reads_snippets_install_lines_and_expected_output():
    text = "\n".join([
        "## Quickstart", "intro", "### Try it offline, now", "```bash",
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e .   # once",
        "echo HI   # prints HI", "```", "```python", "print('A')  # prints A", "print('B')  # prints  B C ",
        "```", "### Real models", "```bash", "hubert-tf transcribe big.wav  # prints never run", "```",
        "```python", "# Not a heading", "```", "## Next", "```python", "print(1)  # prints 1", "```",
    ])
    found = snippets(text)
    assert [(s.language, s.expected) for s in found] == [("bash", ["HI"]), ("python", ["A", "B C"])]
    assert found[0].install == ["python3 -m venv .venv && . .venv/bin/activate && pip install -e .   # once"]
    assert "pip" not in found[0].code and found[1].install == []
    assert is_install("python -m pip install '.[test]'") and not is_install("echo pip install")


def test_readme_quickstart_matches_the_shipped_demo():
    found = readme_snippets()
    assert {s.language for s in found} == {"bash", "python"}, "the offline Quickstart needs shell and Python snippets"
    assert all(s.expected for s in found), "every offline snippet must say what it prints (`# prints ...`)"
    install = [line for s in found for line in s.install]
    assert len(install) == 1 and re.search(r"pip install (-e )?[\"']?\.", install[0]), install
    with open(os.path.join(DEMO, "SOURCE.json"), encoding="utf-8") as f:
        samples = json.load(f)["samples"]
    code = "".join(s.code for s in found)
    used = [name for name in samples if f"tests/fixtures/demo/{name}" in code]
    assert used, f"the Quickstart uses none of the demo samples {sorted(samples)}"
    printed = {line for s in found for line in s.expected}
    assert {samples[name] for name in used} <= printed, "the README must show each used sample's true transcript"


def test_demo_checkpoint_is_complete_and_small():
    names = set(os.listdir(DEMO))
    needed = {"config.json", "model.safetensors", "vocab.json", "tokenizer_config.json", "special_tokens_map.json",
              "preprocessor_config.json", "SOURCE.json"}
    assert needed <= names, f"missing: {sorted(needed - names)}"
    with open(os.path.join(DEMO, "SOURCE.json"), encoding="utf-8") as f:
        source = json.load(f)
    assert set(source["samples"]) <= names
    size = sum(os.path.getsize(os.path.join(DEMO, n)) for n in names)
    assert size < 2 * 1024 * 1024, f"the demo fixture is {size / 2**20:.2f} MiB"
    assert source["held_out_exact"] >= 0.9


@pytest.mark.parametrize("index", range(len(readme_snippets())))
def test_readme_snippet_runs_offline_and_prints_the_transcript(index):
    snippet = readme_snippets()[index]
    result = run(snippet)
    assert result.returncode == 0, f"{snippet.language} snippet failed:\n{snippet.code}\n{result.stderr[-3000:]}"
    assert result.stdout.splitlines() == snippet.expected, result.stderr[-2000:]
