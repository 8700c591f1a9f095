import pytest

from modelhost.errors import ArtifactError, ModelLoadError
from tests.frameworks.helpers import invoke, load


def test_an_empty_folder_says_what_was_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match=r"no model recognised .*notes.txt.*inference.py with model_fn"):
        load(tmp_path)


def test_a_bad_manifest_names_the_field(tmp_path):
    (tmp_path / "modelhost.yaml").write_text("framework: tensorflow\n")
    with pytest.raises(ArtifactError, match="framework"):
        load(tmp_path)
    (tmp_path / "modelhost.yaml").write_text("batching:\n  max_batch_size: 0\n")
    with pytest.raises(ArtifactError, match="batching.max_batch_size"):
        load(tmp_path)
    (tmp_path / "modelhost.yaml").write_text("frameworks: sklearn\n")
    with pytest.raises(ArtifactError, match="frameworks"):
        load(tmp_path)


def test_custom_model_with_its_own_predict(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "helper.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "code" / "inference.py").write_text(
        "from helper import double\n\n"
        "def model_fn(model_dir):\n    return double\n\n"
        "def predict_fn(data, model):\n    return [model(x) for x in data]\n"
    )
    loaded = load(tmp_path)
    assert loaded.framework == "custom+inference.py"
    assert invoke(loaded, [1, 2]) == [2, 4]


def test_sagemaker_program_names_the_script(tmp_path):
    (tmp_path / "serve_me.py").write_text("def model_fn(d):\n    return 1\n\ndef predict_fn(x, m):\n    return 'ok'\n")
    assert invoke(load(tmp_path, program="serve_me.py"), [1]) == "ok"
    with pytest.raises(ModelLoadError, match="missing.py"):
        load(tmp_path, program="missing.py")


def test_model_fn_without_predict_fn_needs_a_known_framework(tmp_path):
    (tmp_path / "inference.py").write_text("def model_fn(d):\n    return object()\n")
    with pytest.raises(ModelLoadError, match="define predict_fn"):
        load(tmp_path)
