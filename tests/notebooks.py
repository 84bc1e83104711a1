"""Runs a notebook's code cells in-process (no jupyter needed), so the suite keeps notebooks from rotting."""

import json
import os


def run_notebook(path, parameters=None, cwd=None):
    """Executes the code cells of `path` in order; the cell tagged "parameters" is followed by
    assignments of `parameters`. Returns the namespace after the last cell."""
    with open(path, encoding="utf-8") as f:
        notebook = json.load(f)
    namespace = {"__name__": "__notebook__"}
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        for index, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            exec(compile(source, f"{os.path.basename(path)}[cell {index}]", "exec"), namespace)
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                namespace.update(parameters or {})
    finally:
        os.chdir(old)
    return namespace
