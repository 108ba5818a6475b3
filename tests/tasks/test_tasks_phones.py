"""61 -> 48 -> 39 folding."""

import numpy as np
import pytest

from tasks import phones


def test_set_sizes_and_q():
    assert len(phones.PHONES_61) == 61 and len(phones.PHONES_48) == 48 and len(phones.PHONES_39) == 39
    assert "q" in phones.PHONES_61 and phones.fold("q", 39) is None and phones.fold("q", 48) is None
    assert len(phones.class_names(61)) == 60 and "q" not in phones.class_names(61)
    q = phones.PHONES_61.index("q")
    for ls in phones.LABEL_SETS:
        assert phones.lookup_61(ls)[q] == -1
        assert (np.delete(phones.lookup_61(ls), q) >= 0).all()


@pytest.mark.parametrize("p61,p48,p39", [("ao", "ao", "aa"), ("ax-h", "ax", "ah"), ("axr", "er", "er"),
                                         ("bcl", "vcl", "sil"), ("pcl", "cl", "sil"), ("epi", "epi", "sil"),
                                         ("h#", "sil", "sil"), ("pau", "sil", "sil"), ("hv", "hh", "hh"),
                                         ("ix", "ix", "ih"), ("el", "el", "l"), ("em", "m", "m"),
                                         ("en", "en", "n"), ("nx", "n", "n"), ("eng", "ng", "ng"),
                                         ("ux", "uw", "uw"), ("zh", "zh", "sh"), ("iy", "iy", "iy")])
def test_known_foldings(p61, p48, p39):
    assert phones.fold(p61, 48) == p48 and phones.fold(p61, 39) == p39


@pytest.mark.parametrize("label_set", [48, 61])
def test_eval_fold_agrees_with_direct_fold(label_set):
    """Folding 61 -> label_set -> 39 through eval_fold equals folding 61 -> 39 directly, for all labels."""
    ef = phones.eval_fold(label_set)
    assert ef.shape == (len(phones.class_names(label_set)),)
    via = ef[phones.lookup_61(label_set)[phones.lookup_61(label_set) >= 0]]
    direct = phones.lookup_61(39)[phones.lookup_61(39) >= 0]
    assert np.array_equal(via, direct)
    assert set(ef.tolist()) == set(range(39))
    m = phones.fold_matrix(label_set)
    assert m.shape == (len(ef), 39) and np.array_equal(m.argmax(1), ef) and np.allclose(m.sum(1), 1)


def test_identity_for_39_and_bad_label_set():
    assert phones.eval_fold(39) is None and np.array_equal(phones.fold_matrix(39), np.eye(39))
    with pytest.raises(ValueError, match="label_set"):
        phones.class_names(40)
