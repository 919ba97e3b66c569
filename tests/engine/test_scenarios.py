"""Valuation points: regulatory grids from the parameter set, house grids derived from them."""

from __future__ import annotations

import numpy as np
import pytest

from margin.engine import scenarios
from margin.engine.parameters import load_parameter_set
from margin.engine.portfolio import PRODUCT_CLASSES


@pytest.fixture(scope="module")
def params():
    return load_parameter_set()


@pytest.mark.parametrize("cls", PRODUCT_CLASSES)
def test_regulatory_grids_come_from_the_parameter_set(params, cls):
    grid = scenarios.points_for(params, cls)
    assert grid.dtype == np.float64
    assert tuple(grid) == params.portfolio_margin.points[cls]
    assert 0.0 not in grid  # the unchanged price is not a point
    assert np.all(np.diff(grid) > 0)
    n_down, n_up = scenarios.side_counts(grid)
    assert n_down + n_up == grid.size
    assert grid.size == (5 if cls == "stablecoin" else 10)


def test_regulatory_ranges_of_methodology_section_1(params):
    g = scenarios.regulatory_grids(params)
    assert (g["equity"].min(), g["equity"].max()) == (-0.15, 0.15)
    assert np.allclose(np.abs(g["equity"][:5]), [0.15, 0.12, 0.09, 0.06, 0.03])
    assert (g["broad_index_high_cap"].min(), g["broad_index_high_cap"].max()) == (-0.08, 0.06)
    assert (g["crypto"].min(), g["crypto"].max()) == (-0.66, 1.0)
    assert (g["stablecoin"].min(), g["stablecoin"].max()) == (-0.20, 0.02)


def test_a_firm_overlay_changes_the_points():
    p = load_parameter_set().with_overrides({"portfolio_margin": {"points": {"equity": [-0.2, 0.2]}}})
    assert list(scenarios.points_for(p, "equity")) == [-0.2, 0.2]


def test_symmetric_grid_is_equidistant_without_zero():
    g = scenarios.symmetric_grid(5, 5, 0.25)
    assert np.allclose(g, [-0.25, -0.2, -0.15, -0.1, -0.05, 0.05, 0.1, 0.15, 0.2, 0.25])
    g = scenarios.symmetric_grid(4, 1, 0.2, 0.02)
    assert np.allclose(g, [-0.2, -0.15, -0.1, -0.05, 0.02])


def test_extended_grid_reaches_the_stress_range(params):
    eq = scenarios.points_for(params, "equity")
    ext = scenarios.extended_grid(eq, 0.25, "equity")
    assert ext.size == eq.size and ext.min() == pytest.approx(-0.25)
    assert ext.max() == pytest.approx(0.25)
    hc = scenarios.points_for(params, "broad_index_high_cap")
    ext = scenarios.extended_grid(hc, 0.25, "broad_index_high_cap")
    assert scenarios.side_counts(ext) == scenarios.side_counts(hc)
    assert ext.min() == pytest.approx(-0.25) and ext.max() == pytest.approx(0.25)
    # a side already wider is kept as it is; the depeg grid is its own stress
    crypto = scenarios.points_for(params, "crypto")
    assert np.array_equal(scenarios.extended_grid(crypto, 0.25, "crypto"), crypto)
    stable = scenarios.points_for(params, "stablecoin")
    assert np.array_equal(scenarios.extended_grid(stable, 0.25, "stablecoin"), stable)
    # a narrower stress range changes nothing
    assert np.array_equal(scenarios.extended_grid(eq, 0.10, "equity"), eq)


def test_scaled_and_widened_grids_keep_the_side_counts(params):
    hc = scenarios.points_for(params, "broad_index_high_cap")
    s = scenarios.scaled_grid(hc, 0.30)
    assert scenarios.side_counts(s) == scenarios.side_counts(hc)
    assert s.min() == pytest.approx(-0.30) and s.max() == pytest.approx(0.30)
    s = scenarios.scaled_grid(hc, 0.05)  # the concentration overlay's "other" move narrows
    assert s.max() == pytest.approx(0.05)
    w = scenarios.widened_grid(hc, 0.05)  # an override never narrows
    assert np.array_equal(w, hc)
    w = scenarios.widened_grid(hc, 0.40, 0.0)
    assert w.min() == pytest.approx(-0.40) and w.max() == pytest.approx(0.06)


def test_vol_multipliers():
    assert scenarios.vol_multipliers(0.25) == (1.25, 0.75)
    assert scenarios.vol_multipliers(1.5)[1] == 0.0


def test_grid_table_pads_and_masks(params):
    reg = scenarios.GridRegistry()
    a = reg.intern(scenarios.points_for(params, "equity"))
    b = reg.intern(scenarios.points_for(params, "stablecoin"))
    assert reg.intern(scenarios.points_for(params, "narrow_index")) == a  # same points
    t = reg.table()
    assert t.points.shape == (2, 10) and t.width == 10
    assert t.valid[a].all() and t.valid[b].sum() == 5
    assert np.all(t.points[b][~t.valid[b]] == 0.0)
    assert list(t.length) == [10, 5]
