"""Compiled inner loops of the exact fast solver: batched tridiagonal solves along rows or columns.

Layer: cosim.read. A chain solve is a first-order recurrence along the chain; numpy can only run
it as a Python loop over positions, one whole-slab operation per position, so at 256 x 256 with
100 vectors it is bound by interpreter overhead and memory passes, not arithmetic. Numba
compiles the loops below (once per machine: the machine code is cached beside this file or
under ``NUMBA_CACHE_DIR``), each chain's whole solve runs while its data is in cache, and the
GIL is released so the solver's threads run chunks of the batch side by side. Without numba
(:func:`compiled` returns None) the solver keeps its numpy loops; the results agree to rounding.

Arrays: ``y`` (N, P, nrhs), C-contiguous float64; ``w`` and ``inv_m`` (L, K) with L the chain
length and K the number of chains (``w[l]`` couples position l to l-1, as in ``_Chains``).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["compiled", "chain_solve_rows", "chain_solve_cols", "sweep_rows", "sweep_cols", "apply_k", "dot_k",
           "cg_step_k"]


def chain_solve_rows(y, w, inv_m):  # pragma: no cover - compiled
    """y[i] <- T_i^-1 y[i] for the chains along axis 1 (one per row i)."""
    N, P, R = y.shape
    for i in range(N):
        for l in range(1, P):
            wl = w[l, i]
            for r in range(R):
                y[i, l, r] -= wl * y[i, l - 1, r]
        for l in range(P):
            s = inv_m[l, i]
            for r in range(R):
                y[i, l, r] *= s
        for l in range(P - 2, -1, -1):
            wl = w[l + 1, i]
            for r in range(R):
                y[i, l, r] -= wl * y[i, l + 1, r]


def chain_solve_cols(y, w, inv_m):  # pragma: no cover - compiled
    """y[:, j] <- T_j^-1 y[:, j] for the chains along axis 0 (one per column j)."""
    N, P, R = y.shape
    for l in range(1, N):
        for j in range(P):
            wl = w[l, j]
            for r in range(R):
                y[l, j, r] -= wl * y[l - 1, j, r]
    for l in range(N):
        for j in range(P):
            s = inv_m[l, j]
            for r in range(R):
                y[l, j, r] *= s
    for l in range(N - 2, -1, -1):
        for j in range(P):
            wl = w[l + 1, j]
            for r in range(R):
                y[l, j, r] -= wl * y[l + 1, j, r]


def sweep_rows(y, w, upper):  # pragma: no cover - compiled
    """y <- L^-1 y (``upper`` False) or L^-T y along axis 1."""
    N, P, R = y.shape
    for i in range(N):
        if not upper:
            for l in range(1, P):
                wl = w[l, i]
                for r in range(R):
                    y[i, l, r] -= wl * y[i, l - 1, r]
        else:
            for l in range(P - 2, -1, -1):
                wl = w[l + 1, i]
                for r in range(R):
                    y[i, l, r] -= wl * y[i, l + 1, r]


def sweep_cols(y, w, upper):  # pragma: no cover - compiled
    """y <- L^-1 y (``upper`` False) or L^-T y along axis 0."""
    N, P, R = y.shape
    if not upper:
        for l in range(1, N):
            for j in range(P):
                wl = w[l, j]
                for r in range(R):
                    y[l, j, r] -= wl * y[l - 1, j, r]
    else:
        for l in range(N - 2, -1, -1):
            for j in range(P):
                wl = w[l + 1, j]
                for r in range(R):
                    y[l, j, r] -= wl * y[l + 1, j, r]


def apply_k(p, out, wC, isqC, D, wR, imR, tmp, pAp, res, beta, new_direction):  # pragma: no cover - compiled
    """out <- (I - K) p with K = C^-1 D T_R^-1 D C^-T, C = L_C M_C^1/2 (the solver's CG
    operator), and pAp[r] <- p . out; with ``new_direction``, first p <- res + beta p (the CG
    direction update, in the same pass). Fused: the scalings ride on the sweeps, so the whole
    operator is four passes over the field. ``tmp`` is a (P, nrhs) work slab."""
    N, P, R = p.shape
    for l in range(N - 1, -1, -1):                  # out = L_C^-T (M_C^-1/2 p), bottom up
        if new_direction:
            for j in range(P):
                for r in range(R):
                    p[l, j, r] = res[l, j, r] + beta[r] * p[l, j, r]
        if l == N - 1:
            for j in range(P):
                s = isqC[l, j]
                for r in range(R):
                    out[l, j, r] = s * p[l, j, r]
        else:
            for j in range(P):
                s, wl = isqC[l, j], wC[l + 1, j]
                for r in range(R):
                    out[l, j, r] = s * p[l, j, r] - wl * out[l + 1, j, r]
    for i in range(N):                              # out = T_R^-1 D out, row by row (D again below)
        d = D[i, 0]
        for r in range(R):
            out[i, 0, r] *= d
        for l in range(1, P):
            wl, d = wR[l, i], D[i, l]
            for r in range(R):
                out[i, l, r] = d * out[i, l, r] - wl * out[i, l - 1, r]
        for r in range(R):
            out[i, P - 1, r] *= imR[P - 1, i]
        for l in range(P - 2, -1, -1):
            s, wl = imR[l, i], wR[l + 1, i]
            for r in range(R):
                out[i, l, r] = s * out[i, l, r] - wl * out[i, l + 1, r]
    pAp[:] = 0.0
    for j in range(P):                              # out = p - M_C^-1/2 L_C^-1 D out, top down
        s, d = isqC[0, j], D[0, j]
        for r in range(R):
            y = d * out[0, j, r]
            tmp[j, r] = y
            x = p[0, j, r] - s * y
            out[0, j, r] = x
            pAp[r] += p[0, j, r] * x
    for l in range(1, N):
        for j in range(P):
            s, d, wl = isqC[l, j], D[l, j], wC[l, j]
            for r in range(R):
                y = d * out[l, j, r] - wl * tmp[j, r]
                tmp[j, r] = y
                x = p[l, j, r] - s * y
                out[l, j, r] = x
                pAp[r] += p[l, j, r] * x


def dot_k(a, b, out):  # pragma: no cover - compiled
    """out[r] <- sum over cells of a * b, per right-hand side."""
    N, P, R = a.shape
    out[:] = 0.0
    for i in range(N):
        for j in range(P):
            for r in range(R):
                out[r] += a[i, j, r] * b[i, j, r]


def cg_step_k(u, res, p, Ap, alpha, rr_new):  # pragma: no cover - compiled
    """u += alpha p, res -= alpha Ap, rr_new = |res|^2 per right-hand side."""
    N, P, R = u.shape
    rr_new[:] = 0.0
    for i in range(N):
        for j in range(P):
            for r in range(R):
                a = alpha[r]
                u[i, j, r] += a * p[i, j, r]
                x = res[i, j, r] - a * Ap[i, j, r]
                res[i, j, r] = x
                rr_new[r] += x * x


_COMPILED: dict | None = None
_TRIED = False


def compiled() -> dict | None:
    """The compiled kernels by name, or None where numba is missing or ``XBAR_NO_NUMBA`` is set."""
    global _COMPILED, _TRIED
    if not _TRIED:
        _TRIED = True
        if os.environ.get("XBAR_NO_NUMBA"):
            return None
        try:
            import numba
        except ImportError:
            return None
        jit = numba.njit(cache=True, nogil=True, fastmath=False)
        _COMPILED = {f.__name__: jit(f) for f in (chain_solve_rows, chain_solve_cols, sweep_rows, sweep_cols,
                                                  apply_k, dot_k, cg_step_k)}
        y, w, v = np.zeros((2, 2, 1)), np.zeros((2, 2)), np.zeros(1)   # compile (or load the cache) once
        _COMPILED["chain_solve_rows"](y, w, w)
        _COMPILED["chain_solve_cols"](y, w, w)
        _COMPILED["sweep_rows"](y, w, False)
        _COMPILED["sweep_cols"](y, w, False)
        _COMPILED["apply_k"](y, y.copy(), w, w, w, w, w, np.zeros((2, 1)), v.copy(), y.copy(), v, False)
        _COMPILED["dot_k"](y, y, v)
        _COMPILED["cg_step_k"](y, y.copy(), y.copy(), y.copy(), v, v.copy())
    return _COMPILED
