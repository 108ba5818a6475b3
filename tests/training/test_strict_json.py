import numpy as np

from spiking_deepr.checkpoint import dumps_strict


def test_numpy_values_and_non_finite_numbers_serialise_as_strict_json():
    # task.info of the TIMIT loader holds float32 arrays (feature statistics)
    obj = {"mean": np.array([1.5, np.nan], dtype=np.float32), "x": np.float64(np.inf), "n": np.int64(3)}
    assert dumps_strict(obj) == '{"mean": [1.5, null], "x": null, "n": 3}'
