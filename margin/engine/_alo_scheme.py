"""The fixed arrays of the Andersen-Lake-Offengelt American scheme (``pricing``'s AMERICAN).

One definition for both implementations: the numpy reference in ``pricing`` and the numba
kernels in ``_pricing_kernels`` (which compile these arrays in as constants). They depend on
the scheme's sizes only, never on an option.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray


def alo_scheme(nodes: int, fp_points: int, price_points: int) -> tuple[NDArray[np.float64], ...]:
    """Fixed arrays of the Andersen-Lake-Offengelt scheme; they depend on the scheme only.

    The put's exercise boundary B is stored as H_i = log(B(tau_i) / X)^2 at the
    Chebyshev-Lobatto nodes z_i = -cos(i pi / nodes) of z = 2 sqrt(tau / T) - 1, i.e.
    tau_i = T (1 + z_i)^2 / 4 (X = K min(1, r / q), the boundary at expiry; H_0 = 0). H at
    any z is a fixed linear combination of the H_i (Chebyshev interpolation), so the boundary
    at every quadrature point is a dot product with precomputed weights. Both integrals use
    Gauss-Legendre in theta on [0, pi / 2] after u = tau sin^2(theta) (fixed point, u the
    time to expiry at the integration point) and t = T sin^2(theta) (price, t the time from
    now): the boundary is smooth in sqrt(tau), so this removes the square-root behaviour of
    the integrands at both ends.

    Returns: tau_i / T; u / tau, the weights (du / (tau dx)) and cos(theta) = sqrt((tau - u)
    / tau) of the fixed-point rule, its interpolation weights (node i, point g, node j);
    sqrt(t / T) and the weights (2 sqrt(t) dt / (sqrt(T) ... ) = 2 d sqrt(t) / (sqrt(T) dx))
    of the price rule and its interpolation weights (point g, node j).
    """
    j = np.arange(nodes + 1)
    # a_k = sum_j cmat[k, j] H_j gives H(x) = sum_k a_k T_k(x), x = -z (halvings folded in)
    cmat = np.cos(np.outer(j, j) * np.pi / nodes) * np.where((j == 0) | (j == nodes), 1.0,
                                                             2.0)[None, :] / nodes
    cmat[0] *= 0.5
    cmat[-1] *= 0.5

    def weights(z: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.cos(np.outer(np.arccos(np.clip(-z, -1.0, 1.0)), j)) @ cmat

    tau_frac = 0.25 * (1.0 - np.cos(j * np.pi / nodes)) ** 2
    x, w = np.polynomial.legendre.leggauss(fp_points)
    theta = 0.25 * np.pi * (1.0 + x)
    fp_u = np.sin(theta) ** 2
    fp_w = w * 0.25 * np.pi * np.sin(2.0 * theta)
    fp_cos = np.cos(theta)
    z_u = 2.0 * np.sqrt(tau_frac[:, None] * fp_u[None, :]) - 1.0
    fp_interp = weights(z_u.ravel()).reshape(nodes + 1, fp_points, nodes + 1)
    x, w = np.polynomial.legendre.leggauss(price_points)
    theta = 0.25 * np.pi * (1.0 + x)
    px_z = np.sin(theta)
    px_w = w * 0.5 * np.pi * np.cos(theta)
    px_interp = weights(2.0 * np.cos(theta) - 1.0)
    return tau_frac, fp_u, fp_w, fp_cos, fp_interp, px_z, px_w, px_interp


#: Andersen-Lake-Offengelt scheme (their l, m, n, p: fixed-point quadrature points, iterations,
#: Chebyshev nodes, price quadrature points): within $0.0034 per unit of a converged scheme on
#: the whole test domain (tests/engine/test_pricing.py); the first iteration is a Jacobi-Newton
#: step
ALO_NODES: Final = 5
ALO_ITERATIONS: Final = 3
ALO_FP_POINTS: Final = 5
ALO_PRICE_POINTS: Final = 15
#: below this total volatility v sqrt(t) AMERICAN uses BS2002 (near the zero-vol limit, where
#: the boundary equations degenerate)
ALO_MIN_TOTAL_VOL: Final = 1e-3
(ALO_TAU, ALO_FP_U, ALO_FP_W, ALO_FP_COS, ALO_FP_INTERP, ALO_PX_Z, ALO_PX_W,
 ALO_PX_INTERP) = alo_scheme(ALO_NODES, ALO_FP_POINTS, ALO_PRICE_POINTS)
#: QD+ Halley iteration (the boundary's starting guess): relative step at which it stops, cap
QD_TOL: Final = 1e-13
QD_MAX_ITER: Final = 12
