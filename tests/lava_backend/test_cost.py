"""Cost per inference against a hand-computed case."""
import numpy as np
import pytest

from lava_backend.cost import CostCounter
from test_hardware import BASE, net


def test_cost_hand_computed():
    spec = net(n_in=2, n=3)                       # dense w_in [3, 2], no recurrence, readout [1, 3]
    x = np.zeros((2, 3, 2))
    x[0, 0, 0], x[0, 1, 1] = 1.0, 0.5             # sequence 0: one nonzero input per step
    x[1, 0, 1] = -2.0                             # sequence 1 (length 1)
    x[1, 2, :] = 9.0                              # padding: must not count
    spikes = np.zeros((2, 3, 3), dtype=np.uint8)
    spikes[0, 0] = [1, 0, 0]
    spikes[0, 1] = [0, 1, 1]
    spikes[1, 0] = [1, 1, 0]
    spikes[1, 1:] = 1                             # padding
    counter = CostCounter(spec)
    counter.add(x, np.array([2, 1]), [spikes])
    cost = counter.report(BASE)
    ops = cost["synaptic_ops_per_sample"]
    # input: 3 nonzero values x fan-out 3 = 9 MACs; spikes: 5 x fan-out 1 = 5 ACs; over 2 sequences
    assert ops["effective_macs"] == pytest.approx(9 / 2) and ops["effective_acs"] == pytest.approx(5 / 2)
    assert cost["steps_per_sample"] == pytest.approx(1.5)
    assert ops["dense_equivalent_macs"] == pytest.approx((3 * 2 + 1 * 3) * 1.5)
    assert cost["connection_sparsity"] == 0.0
    assert cost["spikes_per_neuron_per_step"] == pytest.approx(5 / (3 * 3))
    assert cost["activation_sparsity"] == pytest.approx(1 - 5 / 9)
    assert cost["neuron_updates_per_sample"] == pytest.approx(4 * 1.5)
    energy = (7.0 * 23.6 + 6.0 * 52.0 + 2.5 * 1.7) * 1e-6
    assert cost["energy_per_sample_uj"] == pytest.approx(energy)
    # layer: 2 cores (2 neurons each): 3 ops per step / 2 cores * 3.5 ns + 2 neurons * 5.3 ns;
    # readout: 5/3 ops per step on 1 core + 1 neuron -> the layer is slower
    step_ns = 3.0 / 2 * 3.5 + 2 * 5.3
    assert cost["latency_per_sample_us"] == pytest.approx(1.5 * step_ns * 1e-3)


def test_cost_of_binary_input_counts_accumulates():
    from dataclasses import replace

    spec = replace(net(n_in=2, n=3), input_spikes=True)
    counter = CostCounter(spec)
    counter.add(np.ones((1, 2, 2)), np.array([2]), [np.zeros((1, 2, 3))])
    ops = counter.report(BASE)["synaptic_ops_per_sample"]
    assert ops["effective_acs"] == 12 and ops["effective_macs"] == 0
