"""Default conversion uses Lava's standard LIF process for LIF layers where it is exact (one
sequence per lane), the ALIF process where it is not; results stay equal to the references."""
import numpy as np
import pytest

pytest.importorskip("lava")

from netgen import lsnn_spec, rand_input  # noqa: E402

from lava_backend.params import ConversionError  # noqa: E402
from lava_backend.quantize import quantize_network  # noqa: E402
from lava_backend.reference import reference_fixed, reference_float  # noqa: E402
from lava_backend.simulate import simulate  # noqa: E402

TIMEOUT = 120


def _equal_layers(a, b):
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la, lb)


def test_lif_layers_run_on_lavas_lif_by_default_and_stay_exact():
    spec = lsnn_spec(seed=5, kinds=("lif", "alif"), n=30, readout="li")
    x = rand_input(7, 3, 50, 8, 1.5)
    lengths = np.array([50, 37, 44])
    res = simulate(spec, x, lengths, timeout=TIMEOUT)
    assert res.info["neurons"] == {"lif0": "LIF", "alif1": "ALIF"}
    ref = reference_float(spec, x, lengths)
    assert res.layers[0].sum() > 20
    _equal_layers(res, ref)
    np.testing.assert_allclose(res.readout, ref.readout, rtol=0, atol=1e-12)
    q = quantize_network(spec, calib_x=x, calib_lengths=lengths)
    fixed = simulate(spec, x, lengths, precision="fixed", quant=q, timeout=TIMEOUT)
    assert fixed.info["neurons"]["lif0"] == "LIF"
    exact = reference_fixed(q, x, lengths)
    _equal_layers(fixed, exact)
    np.testing.assert_array_equal(fixed.readout_int, exact.readout_int)


def test_back_to_back_sequences_fall_back_to_the_resetting_process():
    spec = lsnn_spec(seed=5, kinds=("lif",), n=30, readout="linear")
    x = rand_input(7, 3, 40, 8, 1.5)
    res = simulate(spec, x, lanes=1, timeout=TIMEOUT)   # three sequences in one lane
    assert res.info["neurons"] == {"lif0": "ALIF"}
    _equal_layers(res, reference_float(spec, x))
    with pytest.raises(ConversionError, match="one sequence per lane"):
        simulate(spec, x, lanes=1, neuron_impl="lava_lif", timeout=TIMEOUT)
