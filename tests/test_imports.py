"""Fast imports (issue 13): `import hubert_tf`, the config, the processing classes and `hubert-tf --help`
load no TensorFlow or Keras; every public name still imports; Keras still finds the layers of a `.keras`
file with no `custom_objects`, whatever the import order."""

import os
import subprocess
import sys
import time

import pytest

import hubert_tf

HEAVY = ("tensorflow", "keras", "tf_keras", "torch", "transformers", "jax")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imported_modules(*argv):
    """Top-level module names `python -X importtime <argv>` imported, and the completed process."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True,
                            timeout=120, env=env, cwd=REPO)
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if not name.startswith("imported package"):
                names.add(name)
    return names, result


def roots(names):
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("code", [
    "import hubert_tf",
    "import hubert_tf.configuration; hubert_tf.configuration.HubertConfig(num_hidden_layers=2)",
    "from hubert_tf import HubertConfig, HubertProcessor, HubertFeatureExtractor, HubertCTCTokenizer, load_audio",
    "import hubert_tf.processing, hubert_tf.units.cli, hubert_tf.units.kmeans",
])
def test_light_imports_load_no_tensorflow(code):
    names, result = imported_modules("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hubert_tf" in names
    assert not roots(names) & set(HEAVY), sorted(roots(names) & set(HEAVY))
    assert "hubert_tf.benchmark" not in names  # it imports the Unix-only `resource`


def test_import_hubert_tf_loads_not_even_numpy():
    names, result = imported_modules("-c", "import hubert_tf")
    assert result.returncode == 0 and "numpy" not in roots(names)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["transcribe", "--help"], ["units", "--help"],
                                  ["bench", "--help"]])
def test_cli_help_and_version_load_no_tensorflow(argv):
    names, result = imported_modules("-m", "hubert_tf", *argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: hubert-tf") or result.stdout.startswith("hubert-tf 0.")
    assert not roots(names) & set(HEAVY), sorted(roots(names) & set(HEAVY))
    if argv[0] != "bench":
        assert "hubert_tf.benchmark" not in names


def test_cli_help_is_fast():
    """`hubert-tf --help` and `--version` under 1 s (fastest of 3: the machine is shared)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for flag in ("--help", "--version"):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hubert_tf", flag], check=True, capture_output=True, env=env,
                           cwd=REPO, timeout=60)
            times.append(time.perf_counter() - start)
        assert min(times) < 1.0, f"hubert-tf {flag}: fastest of 3 took {min(times):.2f} s"


def test_version_is_printed():
    result = subprocess.run([sys.executable, "-m", "hubert_tf", "--version"], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.stdout.strip() == f"hubert-tf {hubert_tf.__version__}"


def test_every_public_name_is_importable_and_listed():
    for name in hubert_tf.__all__:
        assert getattr(hubert_tf, name) is not None, name
    assert set(hubert_tf.__all__) <= set(dir(hubert_tf))
    from hubert_tf import TFHubertForCTC, TFHubertModel, transcribe  # noqa: F401 - the old spelling works

    assert TFHubertModel.__module__.startswith("hubert_tf.modeling")
    assert hubert_tf.units.KMeans.__name__ == "KMeans"  # subpackages as attributes, as before
    with pytest.raises(AttributeError, match="no attribute 'TFHubertNothing'"):
        hubert_tf.TFHubertNothing
    with pytest.raises(ImportError):
        from hubert_tf import TFHubertNothing  # noqa: F401


# ------------------------------------------------------------------------- Keras registration
@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    from hubert_tf import HubertConfig, TFHubertModel

    model = TFHubertModel(HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=24, conv_dim=(8, 8), conv_kernel=(10, 3),
                                       conv_stride=(5, 2), num_conv_pos_embeddings=8,
                                       num_conv_pos_embedding_groups=2))
    import numpy as np

    model(np.zeros((1, 800), np.float32))
    path = str(tmp_path_factory.mktemp("keras") / "tiny.keras")
    model.save(path)
    return path


LOAD = """
import sys
{first}
import numpy as np
model = keras.saving.load_model({path!r})
print("LOADED", type(model).__name__, model(np.zeros((1, 800), np.float32))["last_hidden_state"].shape)
"""


@pytest.mark.parametrize("first", [
    "import hubert_tf; assert 'tensorflow' not in sys.modules; import keras",  # the hook registers
    pytest.param("import keras; import hubert_tf", marks=pytest.mark.slow),  # registered at import
])
def test_keras_load_model_needs_only_import_hubert_tf(keras_file, first):
    code = LOAD.format(first=first, path=keras_file)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED TFHubertModel (1, 79, 16)" in result.stdout, result.stdout


def test_the_keras_hook_leaves_the_import_system_clean():
    code = ("import sys, hubert_tf; assert any(type(f).__name__ == '_KerasImportHook' for f in sys.meta_path); "
            "import keras; assert 'hubert_tf.modeling' in sys.modules; "
            "assert not any(type(f).__name__ == '_KerasImportHook' for f in sys.meta_path), sys.meta_path; "
            "assert 'exec_module' not in vars(keras.__spec__.loader); print('CLEAN')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0 and "CLEAN" in result.stdout, result.stderr[-3000:]
