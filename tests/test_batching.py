"""Batch assembly details (gym_openenv.batching) that the vector env relies on."""

import numpy as np

from gym_openenv.batching import _batched_info


def test_batched_info_dtypes_follow_the_first_value_as_in_gymnasium():
    columns = {
        "lives": [3, 2, 1],
        "score": [0.5, 1.0, 2.0],
        "flag": [True, False, True],
        "shape": [[210, 160, 3], [210, 160, 3], [210, 160, 3]],  # lists stay one element each
        "mixed": [1, "one", None],
        "nested": [{"a": 1}, np.arange(2), (1, 2)],
    }
    info = _batched_info(columns, {key: [0, 1, 2] for key in columns}, 3)
    assert info["lives"].dtype == np.int64 and info["lives"].tolist() == [3, 2, 1]
    assert info["score"].dtype == np.float64 and info["flag"].dtype == np.bool_
    assert info["shape"].dtype == object and info["shape"].shape == (3,) and info["shape"][1] == [210, 160, 3]
    assert info["mixed"].dtype == object and info["mixed"].tolist() == [1, "one", None]
    assert info["nested"][0] == {"a": 1} and info["nested"][2] == (1, 2)
    np.testing.assert_array_equal(info["nested"][1], np.arange(2))
    for key in columns:
        assert info[f"_{key}"].tolist() == [True] * 3
    info["_lives"][0] = False  # each mask is its own array
    assert info["_score"][0]


def test_batched_info_rows_some_envs_have():
    columns = {"lives": [5, 4], "shape": [[1], [2, 3]], "odd": [1, 2.5]}
    info = _batched_info(columns, {"lives": [2, 0], "shape": [1, 2], "odd": [0, 1]}, 3)
    assert info["lives"].tolist() == [4, 0, 5] and info["_lives"].tolist() == [True, False, True]
    assert info["shape"].tolist() == [None, [1], [2, 3]] and info["_shape"].tolist() == [False, True, True]
    assert info["odd"].dtype == np.int64 and info["odd"].tolist() == [1, 2, 0]  # cast to the first value's type, as gymnasium does
    one = _batched_info({"shape": [[5]]}, {"shape": [0]}, 1)
    assert one["shape"].dtype == object and one["shape"][0] == [5]
