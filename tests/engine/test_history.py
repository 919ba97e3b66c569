"""Daily-close history: CSV validation and the shipped SYNTHETIC demo history."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import pytest

from margin.engine import history as h
from margin.engine.errors import EngineInputError


def _csv(text: str) -> io.StringIO:
    buf = io.StringIO(text)
    buf.name = "closes.csv"
    return buf


GOOD = """# a comment
date,symbol,close
2024-01-02,AAA,10.5
2024-01-02,BBB,20
2024-01-03,AAA,10.75
2024-01-03,BBB,19.5
2024-01-04,AAA,11
2024-01-04,BBB,19
"""


def test_load_good_file() -> None:
    d = h.load_closes_csv(_csv(GOOD))
    assert d.symbols == ("AAA", "BBB")
    assert d.dates == (date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4))
    assert d.closes["AAA"].tolist() == [10.5, 10.75, 11.0]
    assert d.as_history(["BBB"]) == {"BBB": (20.0, 19.5, 19.0)}
    assert d.as_history(last=2) == {"AAA": (10.75, 11.0), "BBB": (19.5, 19.0)}
    with pytest.raises(KeyError):
        d.as_history(["ZZZ"])


def test_load_from_path(tmp_path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(GOOD)
    assert len(h.load_closes_csv(path)) == 3


@pytest.mark.parametrize(("text", "line", "code"), [
    ("date,sym,close\n2024-01-02,A,1\n", 1, "bad_header"),
    ("date,symbol,close\n2024-01-02,A\n", 2, "bad_row"),
    ("date,symbol,close\n2024-13-02,A,1\n", 2, "bad_date"),
    ("date,symbol,close\n2024-01-02,,1\n", 2, "bad_symbol"),
    ("date,symbol,close\n2024-01-02,A,abc\n", 2, "bad_close"),
    ("date,symbol,close\n2024-01-02,A,nan\n", 2, "bad_close"),
    ("date,symbol,close\n2024-01-02,A,inf\n", 2, "bad_close"),
    ("date,symbol,close\n2024-01-02,A,0\n", 2, "bad_close"),
    ("date,symbol,close\n2024-01-02,A,-3\n", 2, "bad_close"),
    ("date,symbol,close\n2024-01-03,A,1\n2024-01-02,A,1\n", 3, "dates_not_increasing"),
    ("date,symbol,close\n2024-01-02,A,1\n2024-01-02,A,1\n", 3, "dates_not_increasing"),
    ("date,symbol,close\n2024-01-02,A,1\n2024-01-03,A,1\n2024-01-02,B,1\n", 4,
     "unequal_lengths"),
    ("date,symbol,close\n2024-01-02,A,1\n2024-01-03,A,1\n2024-01-02,B,1\n2024-01-04,B,1\n", 5,
     "dates_mismatch"),
])
def test_bad_rows_are_named(text: str, line: int, code: str) -> None:
    with pytest.raises(h.HistoryError) as err:
        h.load_closes_csv(_csv(text))
    assert err.value.code == code
    assert err.value.line == line
    assert err.value.field == f"closes.csv:{line}"
    assert isinstance(err.value, EngineInputError)


def test_empty_files() -> None:
    with pytest.raises(h.HistoryError) as err:
        h.load_closes_csv(_csv("# nothing\n"))
    assert err.value.code == "empty"
    with pytest.raises(h.HistoryError):
        h.load_closes_csv(_csv("date,symbol,close\n"))


def test_shipped_history_is_labelled_synthetic_and_valid() -> None:
    assert "SYNTHETIC" in h.SYNTHETIC_CSV.name
    first = h.SYNTHETIC_CSV.read_text().splitlines()[0]
    assert first.startswith("#") and "SYNTHETIC" in first and "NOT MARKET" in first
    d = h.load_closes_csv(h.SYNTHETIC_CSV)
    assert set(d.symbols) == set(h.SYNTHETIC_SYMBOLS)
    assert len(d) == h.SYNTHETIC_DAYS >= 500 + 2
    for series in d.closes.values():
        assert np.all(series > 0) and np.all(np.isfinite(series))


def test_the_shipped_history_gives_a_var_request_its_history() -> None:
    hist = h.load_closes_csv(h.SYNTHETIC_CSV).as_history(["SPX", "ETH"])
    assert set(hist) == {"SPX", "ETH"}
    assert len(hist["SPX"]) == len(hist["ETH"]) >= 251


def test_generator_is_seeded_and_fat_tailed() -> None:
    a = h.synthetic_closes(seed=7, n_days=300)
    b = h.synthetic_closes(seed=7, n_days=300)
    c = h.synthetic_closes(seed=8, n_days=300)
    assert all(np.array_equal(a.closes[s], b.closes[s]) for s in a.symbols)
    assert not np.array_equal(a.closes["SPX"], c.closes["SPX"])
    big = h.synthetic_closes()
    r = np.diff(np.log(big.closes["SPX"]))
    excess_kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2 - 3.0
    assert excess_kurtosis > 0.5
    # SPY tracks SPX / 10; USDC stays near par
    ratio = big.closes["SPY"] / big.closes["SPX"]
    assert np.allclose(ratio, h.SYNTHETIC_SPY_RATIO, rtol=0.01)
    assert np.all(np.abs(big.closes["USDC"] - 1.0) < 0.01)
    assert all(d.weekday() < 5 for d in big.dates)


def test_write_and_reload_round_trip(tmp_path) -> None:
    path = h.write_synthetic_csv(tmp_path / "x.csv", seed=3, n_days=260)
    d = h.load_closes_csv(path)
    ref = h.synthetic_closes(seed=3, n_days=260)
    assert d.dates == ref.dates
    for s in ref.symbols:
        assert d.closes[s] == pytest.approx(ref.closes[s], rel=1e-5)
