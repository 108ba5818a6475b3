import pytest
import torch

from spiking_deepr.layers import Bidirectional, SparseALIFRecurrent, SparseLSTM, reverse_padded


def test_reverse_padded_is_per_sequence_involution():
    x = torch.arange(5.0).view(5, 1, 1).repeat(1, 3, 1)
    r = reverse_padded(x, torch.tensor([5, 3, 0]))
    assert r[:, 0, 0].tolist() == [4, 3, 2, 1, 0]
    assert r[:, 1, 0].tolist() == [2, 1, 0, 3, 4]
    assert r[:, 2, 0].tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(reverse_padded(r, torch.tensor([5, 3, 0])), x)


@pytest.mark.parametrize("kind", ["lstm", "lsnn"])
def test_padding_does_not_leak(kind):
    F, H, T = 3, 5, 10
    if kind == "lstm":
        make = lambda s: SparseLSTM(F, H, input_connectivity=0.6, recurrent_connectivity=0.6, seed=s)
    else:
        make = lambda s: SparseALIFRecurrent(F, 3, 2, input_connectivity=0.8, recurrent_connectivity=0.5,
                                             input_init_std=4.0, seed=s)
    bi = Bidirectional(make(0), make(1))
    lengths = torch.tensor([10, 6, 3])
    x = torch.rand(T, 3, F)
    out, _ = bi(x, lengths)
    assert out.shape == (T, 3, 2 * H)
    garbage = x.clone()
    for b, L in enumerate(lengths.tolist()):
        garbage[L:, b] = 100 * torch.rand(T - L, F)
    torch.testing.assert_close(bi(garbage, lengths)[0], out)
    for b, L in enumerate(lengths.tolist()):  # each sequence alone, unpadded
        alone, _ = bi(x[:L, b:b + 1])
        torch.testing.assert_close(out[:L, b:b + 1], alone)
        assert torch.all(out[L:, b] == 0)
    with pytest.raises(ValueError, match="lengths"):
        bi(x, torch.tensor([11, 2, 2]))
