"""notebooks/quickstart.ipynb runs end to end on a local fixture model (pictures when matplotlib is there)."""

import os

import pytest

from notebooks import run_notebook

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks", "quickstart.ipynb")


def test_quickstart_notebook(asr_dir, tmp_path):
    ns = run_notebook(NOTEBOOK, {"MODEL": asr_dir, "OUTPUT_DIR": str(tmp_path)})
    assert isinstance(ns["result"]["text"], str) and isinstance(ns["result"]["chunks"], list)
    assert ns["features"].shape == (ns["probs"].shape[0], 16)
    assert abs(ns["probs"].sum(-1) - 1).max() < 1e-5
    if ns["plt"] is not None:
        assert os.path.getsize(tmp_path / "quickstart.png") > 10_000
    else:
        pytest.skip("matplotlib not installed: pictures not drawn")
