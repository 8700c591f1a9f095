import pytest

from modelhost.errors import InvalidInput
from tests.frameworks.helpers import invoke, load
from tests.models import xgboost_booster


@pytest.mark.parametrize("name", ["xgboost-model", "model.ubj", "model.json"])
def test_booster_files_are_detected(tmp_path, name):
    loaded = load(xgboost_booster(tmp_path, name))
    assert loaded.framework == "xgboost"
    [high, low] = invoke(loaded, [[3, 0, 0, 0], [-3, 0, 0, 0]])
    assert high > 0.5 > low


def test_csv_in_csv_out_like_the_builtin_algorithm(tmp_path):
    loaded = load(xgboost_booster(tmp_path))
    body = invoke(loaded, b"3,0,0,0\n-3,0,0,0\n", "text/csv")
    scores = [float(line) for line in body.decode().splitlines()]
    assert len(scores) == 2
    assert scores[0] > 0.5 > scores[1]


def test_wrong_row_width_is_a_client_error(tmp_path):
    loaded = load(xgboost_booster(tmp_path))
    with pytest.raises(InvalidInput, match="4 features, got 3"):
        invoke(loaded, [[1, 2, 3]])
    with pytest.raises(InvalidInput, match="rows of numbers"):
        invoke(loaded, [["a", "b", "c", "d"]])
