"""The delta (send-on-delta) input encoder against hand-computed spikes."""
import pytest
import torch

from spiking_deepr.encoding import delta_encode
from spiking_deepr.model import ModelConfig, SequenceModel


def test_delta_encode_hand_computed():
    x = torch.tensor([0.2, 0.6, 1.4, 1.4, 0.3, -0.5]).view(6, 1, 1)
    s = delta_encode(x, 0.5)
    # ref: 0 -> 0 (0.2) -> 0.5 (0.6: on) -> 1.0 (1.4: on, one step only) -> 1.0 (1.4-1.0 < 0.5)
    #      -> 0.5 (0.3: off) -> 0.0 (-0.5: off; a second level would need another step)
    assert s[:, 0, 0].tolist() == [0, 1, 1, 0, 0, 0]
    assert s[:, 0, 1].tolist() == [0, 0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="threshold"):
        delta_encode(x, 0.0)


def test_model_trains_on_the_encoded_input():
    cfg = ModelConfig(kind="lif", hidden=[6], input_encoding="delta", input_threshold=0.3)
    model = SequenceModel(cfg, n_features=3, n_classes=2)
    assert model.sparse_matrices()["layer0.w_in"].n_in == 6
    spec = model.to_spec()
    assert spec.n_input == 6 and spec.input_spikes
    x = torch.randn(5, 2, 3)
    assert set(model.encode_input(x).unique().tolist()) <= {0.0, 1.0}
    assert model(x).shape == (5, 2, 2)
