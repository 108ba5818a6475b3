import numpy as np
import pytest

from spiking_deepr.export import LIFLayerSpec, NetworkSpec, ReadoutSpec, SparseWeights
from lava_backend.hardware import (HardwareLimitError, ProfileError, check_capabilities,
                                   check_fits, fan_in_cap, load_profile, map_network)

BASE = dict(name="tiny", neurons_per_core=2, synapse_bits_per_core=1000,
            input_axons_per_core=16, output_axons_per_core=16, cores_per_chip=8,
            weight_bits=8, max_fan_in=5, synapse_group_size=64, synapse_group_header_bits=10,
            synapse_word_bits=64, synapse_delay_bits=0, synapse_tag_bits=0,
            synapse_index_bits=0, graded_spike_bits=24, neuron_models=["lif", "alif"], programmable_neurons=True,
            sequence_reset="on_chip", max_synaptic_delay=62, state_bits=24,
            energy_per_synop_pj=23.6, energy_per_neuron_update_pj=52.0, energy_per_spike_pj=1.7,
            time_per_synop_ns=3.5, time_per_neuron_update_ns=5.3)


def dense(n_out, n_in, v=0.5):
    r, c = np.nonzero(np.ones((n_out, n_in)))
    return SparseWeights(shape=(n_out, n_in), rows=r, cols=c, values=np.full(r.size, v))


def net(n_in=2, n=3, w_rec=None):
    layer = LIFLayerSpec(name="l0", n=n, w_in=dense(n, n_in), w_rec=w_rec, tau_syn_inv=200.0,
                         tau_mem_inv=100.0, v_th=1.0)
    ro = ReadoutSpec(kind="li", weights=dense(1, n), bias=np.zeros(1), tau_syn_inv=200.0,
                     tau_mem_inv=100.0)
    return NetworkSpec(n_input=n_in, dt=1e-3, layers=[layer], readout=ro)


def test_profiles_load_and_cap():
    for name in ("loihi1", "loihi2"):
        p = load_profile(name)
        assert p.neurons_per_core == 1024 and p.weight_bits == 8
        # row of one synapse costs a 64-bit word -> 16384 by memory, 4096 by input axons
        assert fan_in_cap(p) == 4096
    assert load_profile("loihi1").cores_per_chip == 128
    assert load_profile("loihi2").cores_per_chip == 120


def test_profile_errors(tmp_path):
    with pytest.raises(ProfileError, match="unknown hardware profile"):
        load_profile("loihi7")
    bad = dict(BASE)
    del bad["synapse_bits_per_core"]
    with pytest.raises(ProfileError, match="synapse_bits_per_core"):
        load_profile(bad)
    f = tmp_path / "p.yaml"
    f.write_text("name: x\nneurons_per_core: 10\n")
    with pytest.raises(ProfileError, match="missing field"):
        load_profile(str(f))
    with pytest.raises(ProfileError, match="not found"):
        load_profile(str(tmp_path / "nope.yaml"))


def test_hand_computed_mapping():
    rep = map_network(net(), BASE)
    assert rep["fits"] and rep["violations"] == []
    # layer: 3 neurons, 2 per core -> 2 cores; readout 1 core
    assert rep["cores"] == 3 and rep["neurons"] == 4
    assert rep["synapses"] == 3 * 2 + 3 and rep["max_fan_in"] == 3
    l0, ro = rep["layers"]
    c0, c1 = l0["core_list"]
    # core 0: 2 input axons, 2 synapses each -> ceil((10 + 2*8)/64)*64 = 64 bits per axon
    assert (c0["neurons"], c0["axons"], c0["bits"]) == (2, 2, 128)
    assert (c1["neurons"], c1["axons"], c1["bits"]) == (1, 2, 128)
    # readout core: 3 axons with one synapse -> 3 * 64 bits
    assert ro["core_list"][0]["bits"] == 192 and ro["core_list"][0]["axons"] == 3
    # each layer neuron projects to one core (the readout's): out axons 2 and 1
    assert (c0["out_axons"], c1["out_axons"]) == (2, 1)


def test_recurrent_out_axons_and_memory_split():
    prof = dict(BASE, neurons_per_core=4, synapse_bits_per_core=256)
    rep = map_network(net(n_in=2, n=4, w_rec=dense(4, 4)), prof)
    # each neuron: 2 input + 4 recurrent sources; one neuron alone = 6 axons * 64 = 384 > 256
    v = [x for x in rep["violations"] if x["what"] == "synapse_bits"]
    assert v and v[0]["layer"] == "l0" and v[0]["limit"] == 256
    assert v[0]["value"] == 384


def test_fan_in_violation_list():
    rep = map_network(net(n_in=8, n=3), BASE)   # fan-in 8 > max_fan_in 5
    assert not rep["fits"]
    fi = [v for v in rep["violations"] if v["what"] == "fan_in"]
    assert [(v["layer"], v["neuron"], v["value"], v["limit"]) for v in fi] == \
        [("l0", 0, 8, 5), ("l0", 1, 8, 5), ("l0", 2, 8, 5)]
    with pytest.raises(HardwareLimitError) as ei:
        check_fits(net(n_in=8, n=3), BASE)
    msg = str(ei.value)
    assert "layer 'l0' neuron 2: fan_in = 8 > limit 5" in msg
    assert ei.value.report["violations"] == rep["violations"]


def test_core_count_violation():
    rep = map_network(net(n_in=2, n=20), dict(BASE, cores_per_chip=4))
    assert any(v["what"] == "cores" and v["value"] == 11 for v in rep["violations"])


def test_lsnn_fits_loihi():
    from netgen import lsnn_spec
    spec = lsnn_spec(n=400, n_adapt=100, n_input=39, classes=39, density=0.1)
    rep = check_fits(spec, "loihi2")
    assert rep["fits"] and rep["cores"] >= 2
    # its resources fit Loihi 1 as well, its capabilities do not (ALIF neurons, graded input)
    rep1 = map_network(spec, "loihi1")
    assert rep1["violations"] == [] and len(rep1["capability_violations"]) == 2


def _missing(spec, profile):
    return sorted((v["layer"], v["capability"], v["needs"], v["has"] if not isinstance(v["has"], list)
                   else tuple(v["has"])) for v in check_capabilities(spec, profile))


def test_capability_refusals_per_profile():
    from dataclasses import replace
    from netgen import lsnn_spec

    lsnn = lsnn_spec(kinds=("alif",))                 # ALIF neurons, real-valued input
    assert _missing(lsnn, "loihi2") == []
    assert _missing(lsnn, "loihi1") == [("alif0", "graded_spikes", 8, 0),
                                        ("alif0", "neuron_model", "alif", ("lif",))]
    lif = lsnn_spec(kinds=("lif",))
    assert _missing(lif, "loihi1") == [("lif0", "graded_spikes", 8, 0)]
    # spike-encoded input: a LIF network is Loihi 1 material
    assert _missing(replace(lif, input_spikes=True), "loihi1") == []
    # an ALIF layer whose beta is all 0 needs only LIF neurons
    plain = lsnn_spec(kinds=("alif",), n_adapt=0)
    assert ("alif0", "neuron_model", "alif", ("lif",)) not in _missing(plain, "loihi1")
    # neuron variants need programmable neurons
    sub = replace(lif, layers=[replace(lif.layers[0], reset="subtract", refractory=2)], input_spikes=True)
    assert _missing(sub, "loihi2") == []
    assert _missing(sub, "loihi1") == [("lif0", "programmable_neurons",
                                        "reset by subtraction and a refractory period that holds v", False)]
    # bit widths of a (hypothetical) smaller chip
    small = dict(BASE, weight_bits=6, state_bits=16)
    assert _missing(lsnn, small) == [(None, "state_bits", 24, 16), (None, "weight_bits", 8, 6)]


def test_lstm_maps_and_is_refused_everywhere():
    from netgen import lsnn_spec

    spec = lsnn_spec(kinds=("lstm",), hidden_lstm=12)
    for name in ("loihi1", "loihi2"):
        rep = map_network(spec, name)          # no IndexError: gate rows fold onto units
        assert not rep["fits"]
        lstm = rep["layers"][0]
        assert lstm["neurons"] == 12 and lstm["synapses"] == spec.layers[0].w_ih.nnz + spec.layers[0].w_hh.nnz
        caps = {(v["layer"], v["capability"], v["needs"]) for v in rep["capability_violations"]}
        assert ("lstm0", "neuron_model", "lstm") in caps
        assert (("readout", "graded_spikes", 24) in caps) == (name == "loihi1")
    with pytest.raises(HardwareLimitError, match="layer 'lstm0': neuron_model: needs LSTM neurons"):
        check_fits(spec, "loihi2")
