"""A real sequence data set that is not in this repository: matplotlib's sample ``Stocks.csv``
(monthly closing prices of 10 US stocks and indices, Yahoo Finance, 1990-2012), written as a
bring-your-own npz directory.

Sequences are 24-month windows of one series; features per step are the monthly log return and
the log price relative to the window start; the sequence label is which series it is (the six
series complete since 1990), and frame labels are the same series id (the npz ``[N]`` form)."""
from pathlib import Path

import numpy as np
from matplotlib import cbook

SERIES = ["IBM", "AAPL", "MSFT", "XRX", "^GSPC", "^IXIC"]
WINDOW = 24


def write_stocks_npz(directory: Path, seed: int = 0) -> Path:
    with cbook.get_sample_data("Stocks.csv") as f:
        text = f.read()
        text = text.decode() if isinstance(text, bytes) else text
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    header = lines[0].split(",")
    rows = [ln.split(",") for ln in lines[1:]]
    xs, ys = [], []
    for label, name in enumerate(SERIES):
        col = header.index(name)
        price = np.array([float(r[col]) for r in rows if r[col]], dtype=np.float64)
        logp = np.log(price)
        for start in range(1, len(logp) - WINDOW, WINDOW // 2):
            seg = logp[start - 1:start + WINDOW]
            ret = np.diff(seg)
            rel = seg[1:] - seg[0]
            xs.append(np.stack([ret * 10, rel], axis=1).astype(np.float32))
            ys.append(label)
    x, y = np.stack(xs), np.array(ys, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    n_test = len(y) // 5
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "train.npz", x=x[n_test:], y=y[n_test:])
    np.savez(directory / "test.npz", x=x[:n_test], y=y[:n_test])
    return directory
