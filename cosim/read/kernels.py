"""Compiled inner loops of the exact fast solver (batched tridiagonal solves along rows or columns)
and of the cheap IR model's per-state line sweeps, with their work-array stores.

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
import threading

import numpy as np

__all__ = ["compiled", "FieldPool", "ThreadScratch", "FIELDS", "chain_solve_rows", "chain_solve_cols", "sweep_rows",
           "sweep_cols",
           "apply_k", "chain_factor_k", "cg_setup_k", "cg_init_k", "cg_residual_k", "cg_finish_k",
           "line_sweeps_numpy", "ir_rows_k", "ir_cols_k", "ir_combine_k"]


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


def apply_k(p, out, wC, isqC, D, wR, imR, tmp, pAp, res, beta, new_direction, u, alpha):  # pragma: no cover
    """out <- (I - K) p with K = C^-1 D T_R^-1 D C^-T, C = L_C M_C^1/2 (the solver's CG
    operator), and pAp[r] <- p . out; with ``new_direction``, first u <- u + alpha p (the last
    step's solution update, deferred to here) and p <- res + beta p (the CG direction update),
    in the same pass. Fused: the scalings ride on the sweeps, so the whole operator is four
    passes over the field. ``tmp`` is a (P, nrhs) work slab. (Running each row's chain solve
    inside the bottom-up sweep, while the row is in cache, was no faster: 19-21 ms per operator
    either way at 256 x 256 and 100 vectors, on a machine whose other core was busy.)"""
    N, P, R = p.shape
    for l in range(N - 1, -1, -1):                  # out = L_C^-T (M_C^-1/2 p), bottom up
        if new_direction:
            for j in range(P):
                for r in range(R):
                    u[l, j, r] += alpha[r] * p[l, j, r]
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


def chain_factor_k(d, e, w, m):  # pragma: no cover - compiled
    """T = L M L^T of K tridiagonal chains at once: ``d`` (L, K) diagonals, ``e`` (L - 1, K)
    off-diagonals; writes ``w`` (L, K), the subdiagonal of L (``w[0]`` = 0), and ``m`` (L, K)."""
    n, K = d.shape
    for k in range(K):
        m[0, k] = d[0, k]
        w[0, k] = 0.0
    for l in range(1, n):
        for k in range(K):
            wl = e[l - 1, k] / m[l - 1, k]
            w[l, k] = wl
            m[l, k] = d[l, k] - wl * e[l - 1, k]


def cg_setup_k(u, v_rd, v_cs, dhg, gcl, wC, isqC, tmp):  # pragma: no cover - compiled
    """u <- M_C^-1/2 L_C^-1 b, b = D T_R^-1 b_R + b_C: the CG system's right-hand side (and
    its first iterate) in one top-down pass. ``dhg[i, j]`` = G_ij h_ij g_i0 (the row drive as
    seen at cell (i, j)), ``v_rd`` (N, nrhs) the row-end and ``v_cs`` (P, nrhs) the column-end
    voltages, ``gcl`` the last column segments' conductances."""
    N, P, R = u.shape
    for l in range(N):
        for j in range(P):
            a, s = dhg[l, j], isqC[l, j]
            wl = wC[l, j] if l > 0 else 0.0
            for r in range(R):
                y = a * v_rd[l, r]
                if l == N - 1:
                    y += gcl[j] * v_cs[j, r]
                if l > 0:
                    y -= wl * tmp[j, r]
                tmp[j, r] = y
                u[l, j, r] = s * y


def cg_init_k(u, Ap, res, p, rr, ff):  # pragma: no cover - compiled
    """res <- u - Ap, p <- res, rr <- |res|^2 and ff <- |u|^2 per right-hand side (u = f, the
    first iterate)."""
    N, P, R = u.shape
    rr[:] = 0.0
    ff[:] = 0.0
    for i in range(N):
        for j in range(P):
            for r in range(R):
                x = u[i, j, r] - Ap[i, j, r]
                res[i, j, r] = x
                p[i, j, r] = x
                rr[r] += x * x
                ff[r] += u[i, j, r] * u[i, j, r]


def cg_residual_k(res, Ap, alpha, rr_new):  # pragma: no cover - compiled
    """res -= alpha Ap, rr_new = |res|^2 per right-hand side (u += alpha p waits for the next
    pass over p: :func:`apply_k` or :func:`cg_finish_k`)."""
    N, P, R = res.shape
    rr_new[:] = 0.0
    for i in range(N):
        for j in range(P):
            for r in range(R):
                x = res[i, j, r] - alpha[r] * Ap[i, j, r]
                res[i, j, r] = x
                rr_new[r] += x * x


def cg_finish_k(u, p, alpha, isqC, wC, dh, x_r, x_last, tmp):  # pragma: no cover - compiled
    """The column-node voltages x = C^-T (u + alpha p), bottom up, without storing them: only
    what the currents need, x_r[i] = sum_j G_ij h_ij x_ij (the row-end voltages' coupling term)
    and x_last = x[N - 1] (the column ends)."""
    N, P, R = u.shape
    x_r[:] = 0.0
    for l in range(N - 1, -1, -1):
        for j in range(P):
            s, d = isqC[l, j], dh[l, j]
            wl = wC[l + 1, j] if l < N - 1 else 0.0
            for r in range(R):
                x = s * (u[l, j, r] + alpha[r] * p[l, j, r])
                if l < N - 1:
                    x -= wl * tmp[j, r]
                tmp[j, r] = x
                x_r[l, r] += d * x
                if l == N - 1:
                    x_last[j, r] = x


class ThreadScratch(threading.local):
    """Per-thread work arrays of the cheap IR model's per-state computation
    (:mod:`cosim.read.irmodel`), reused from call to call.

    A fresh array of this size is fresh memory from the operating system at every call (page
    faults on first touch): at 256 x 256 that cost more than the arithmetic. Only arrays that
    never leave the module live here, one per (name, shape) (a network's tiles come in a few
    shapes), at most :attr:`MAX_KEPT` elements per thread in all (64 MB): a new array that
    would pass it empties the store first, and one larger than it is made fresh each call
    (at that size its arithmetic dominates anyway). :func:`cosim.read.irmodel.release_work_arrays` frees
    the calling thread's."""

    MAX_KEPT = 1 << 23

    def __init__(self) -> None:
        self.arrays: dict[tuple, np.ndarray] = {}
        self.size = 0

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = (name, shape)
        a = self.arrays.get(key)
        if a is None:
            a = np.empty(shape)
            if a.size <= self.MAX_KEPT:
                if self.size + a.size > self.MAX_KEPT:
                    self.clear()
                self.arrays[key] = a
                self.size += a.size
        return a

    def clear(self) -> None:
        self.arrays.clear()
        self.size = 0


class FieldPool:
    """Work fields kept from one solve to the next. A fresh field of 256 x 256 cells x 50
    vectors is 26 MB that the kernel must fault in (with transparent huge pages, zeroed and
    often compacted first) on its first touch: measured on one thread at 256 x 256 and 100
    vectors, fresh fields added 20-200 ms to a solve that takes 125 ms with kept ones. Fields
    go back here after a solve and the next solve of the same shape takes them; at most
    ``limit`` bytes are kept (the fields of the newest shapes), so a long run's memory stays
    flat. Not a kernel, but the kernels' workspace: it lives beside them."""

    def __init__(self, limit: int):
        self.limit = limit
        self._free: dict[tuple[int, ...], list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        with self._lock:
            free = self._free.get(shape)
            if free:
                return free.pop()
        return np.empty(shape)

    def give(self, *fields: np.ndarray) -> None:
        with self._lock:
            for f in fields:
                shape = f.shape
                self._free.setdefault(shape, []).append(f)
                self._free[shape] = self._free.pop(shape)         # newest shape last
                total = sum(a.nbytes for lst in self._free.values() for a in lst)
                while total > self.limit and self._free:
                    oldest = next(iter(self._free))
                    lst = self._free[oldest]
                    total -= lst.pop().nbytes
                    if not lst:
                        del self._free[oldest]


#: The compiled CG's work fields between solves, at most 512 MB (room for the four fields of a
#: 512 x 512 solve of 60 vectors, or for both threads' fields of 100 vectors at 256 x 256).
FIELDS = FieldPool(512 << 20)


def ir_rows_k(G, r, x, rho, lines, u):  # pragma: no cover - compiled
    """The cheap IR model's row chains on G's own layout: x = r K_R(G) and, with ``lines``, the
    exact single-line loadings rho (u: work, (4, M + 2)). The operations of
    :func:`line_sweeps_numpy` per chain, in its order (its zero padding adds exact zeros), so
    the same numbers. Four rows at a time, their chains interleaved: each chain is a serial
    recursion, and four independent ones keep the core busy (a last block repeats its last
    row, reading every value of a step before writing, so a repeated row gets its own numbers)."""
    N, M = G.shape
    for i0 in range(0, N, 4):
        i1, i2, i3 = min(i0 + 1, N - 1), min(i0 + 2, N - 1), min(i0 + 3, N - 1)
        a0 = a1 = a2 = a3 = 0.0
        for j in range(M - 1, -1, -1):
            a0, a1, a2, a3 = G[i0, j] + a0, G[i1, j] + a1, G[i2, j] + a2, G[i3, j] + a3
            x[i0, j], x[i1, j], x[i2, j], x[i3, j] = a0, a1, a2, a3
        a0 = a1 = a2 = a3 = 0.0
        for j in range(M):
            a0, a1, a2, a3 = a0 + x[i0, j], a1 + x[i1, j], a2 + x[i2, j], a3 + x[i3, j]
            x[i0, j], x[i1, j], x[i2, j], x[i3, j] = a0 * r, a1 * r, a2 * r, a3 * r
        if lines:
            for q in range(4):
                u[q, M + 1] = 1.0
                u[q, M] = 1.0
            for l in range(M - 1, -1, -1):
                u[0, l] = (G[i0, l] * r + 2.0) * u[0, l + 1] - u[0, l + 2]
                u[1, l] = (G[i1, l] * r + 2.0) * u[1, l + 1] - u[1, l + 2]
                u[2, l] = (G[i2, l] * r + 2.0) * u[2, l + 1] - u[2, l + 2]
                u[3, l] = (G[i3, l] * r + 2.0) * u[3, l + 1] - u[3, l + 2]
            for q, i in enumerate((i0, i1, i2, i3)):
                for j in range(M):
                    rho[i, j] = u[q, 0] / u[q, j + 1] - 1.0


def ir_cols_k(G, r, x, rho, lines, u):  # pragma: no cover - compiled
    """:func:`ir_rows_k` for the column chains (position 0 at the sensed row N - 1), row after
    row across all columns (u: work, (N + 2, M))."""
    N, M = G.shape
    for j in range(M):
        x[0, j] = G[0, j] + 0.0
    for i in range(1, N):
        for j in range(M):
            x[i, j] = G[i, j] + x[i - 1, j]
    for i in range(N - 2, -1, -1):
        for j in range(M):
            x[i, j] = x[i + 1, j] + x[i, j]
    for i in range(N):
        for j in range(M):
            x[i, j] = x[i, j] * r
    if lines:
        for j in range(M):
            u[N + 1, j] = 1.0
            u[N, j] = 1.0
        for l in range(N - 1, -1, -1):
            i = N - 1 - l
            for j in range(M):
                u[l, j] = (G[i, j] * r + 2.0) * u[l + 1, j] - u[l + 2, j]
        for l in range(N):
            for j in range(M):
                rho[N - 1 - l, j] = u[0, j] / u[l + 1, j] - 1.0


def ir_combine_k(G, xR, xC, rR, rC, KT, cf, W, R):  # pragma: no cover - compiled
    """The cheap IR model's effective conductances W from the line sweeps' features, in one pass
    (:meth:`cosim.read.irmodel.IRModel.physical_weights` with its line and cross terms and the
    mean-field cross term D = x_C (r_row K_R(G gbar) - G x_R)); R gets rho = rho_R + rho_C.
    ``cf``: r_row, a6, a7, -a7, a5, a4, a0 - a2, a1 - a3, a2, a3, b, b2, c. The numpy path's
    operations in its order; where it skips a term of coefficient 0, this adds an exact zero to
    a sum that ends in + 1 (the same numbers, finite features), so the loop has no branch and
    vectorises. Returns the count of cells whose denominator is not > 0."""
    N, M = G.shape
    r_row, a6, a7, na7, a5, a4 = cf[0], cf[1], cf[2], cf[3], cf[4], cf[5]
    c02, c13, a2, a3, b, b2, c = cf[6], cf[7], cf[8], cf[9], cf[10], cf[11], cf[12]
    bad = 0
    for i in range(N):
        for j in range(M):
            g, xr, xc, rr, rc = G[i, j], xR[i, j], xC[i, j], rR[i, j], rC[i, j]
            rho = rr + rc
            P = rr * rc
            den = rho * a6
            den = den + a7
            den = den * rho
            den = den + xr * na7
            den = den + xc * na7
            den = den + P * a5
            den = den * rho
            den = den / (rho + 1.0)
            den = den + P * a4
            den = den + xr * c02
            den = den + xc * c13
            den = den + rr * a2
            den = den + rc * a3
            den = den + 1.0
            bad += 0 if den > 0.0 else 1
            R[i, j] = rho
            D = (KT[i, j] * r_row) * xc - (g * xr) * xc
            s = rho * c
            s = s + 1.0
            k = rho / s
            k = k * b2
            k = k + b
            s = s * s
            k = k / s
            k = k * D
            W[i, j] = g / den + k
    return bad


def line_sweeps_numpy(Y, a2, u, nl):
    """The cheap IR model's line sweeps where numba is not, on the chains stacked side by side
    in Y (L, nk) (:func:`cosim.read.irmodel._line_sweeps`): from the far ends the reverse
    cumulative sums and, on the first ``nl`` chains, the line voltages u[l] = a2[l] u[l+1] -
    u[l+2]; then the forward cumulative sums. One whole-width numpy call per position and
    operation (row views made once: the loops are call-bound)."""
    add, mul, sub = np.add, np.multiply, np.subtract
    L = Y.shape[0]
    y = list(Y)
    if nl:
        a, v, buf = list(a2), list(u), np.empty(nl)
        for l in range(L - 1, -1, -1):
            if l < L - 1:
                add(y[l], y[l + 1], out=y[l])
            mul(a[l], v[l + 1], out=buf)
            sub(buf, v[l + 2], out=v[l])
    else:
        for l in range(L - 2, -1, -1):
            add(y[l], y[l + 1], out=y[l])
    for l in range(1, L):
        add(y[l - 1], y[l], out=y[l])


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
        _COMPILED = {f.__name__: jit(f) for f in (chain_solve_rows, chain_solve_cols, sweep_rows, sweep_cols, apply_k,
                                                  chain_factor_k, cg_setup_k, cg_init_k, cg_residual_k, cg_finish_k,
                                                  ir_rows_k, ir_cols_k)}
        _COMPILED["ir_combine_k"] = numba.njit(cache=True, nogil=True, error_model="numpy")(ir_combine_k)
        y, w, v = np.zeros((2, 2, 1)), np.zeros((2, 2)), np.zeros(1)   # compile (or load the cache) once
        _COMPILED["chain_solve_rows"](y, w, w)
        _COMPILED["chain_solve_cols"](y, w, w)
        _COMPILED["sweep_rows"](y, w, False)
        _COMPILED["sweep_cols"](y, w, False)
        _COMPILED["apply_k"](y, y.copy(), w, w, w, w, w, np.zeros((2, 1)), v.copy(), y.copy(), v, False, y.copy(), v)
        _COMPILED["chain_factor_k"](w + 1.0, w[:1], w.copy(), w.copy())
        s2 = np.zeros((2, 1))
        _COMPILED["cg_setup_k"](y, s2, s2, w, np.zeros(2), w, w, s2.copy())
        _COMPILED["cg_init_k"](y, y.copy(), y.copy(), y.copy(), v.copy(), v.copy())
        _COMPILED["cg_residual_k"](y, y.copy(), v, v.copy())
        _COMPILED["cg_finish_k"](y, y.copy(), v, w, w, w, s2.copy(), s2.copy(), s2.copy())
        for lines in (True, False):
            _COMPILED["ir_rows_k"](w, 1.0, w.copy(), w.copy(), lines, np.ones((4, 4)))
            _COMPILED["ir_cols_k"](w, 1.0, w.copy(), w.copy(), lines, np.ones((4, 2)))
        _COMPILED["ir_combine_k"](w, w, w, w, w, w, np.zeros(13), w.copy(), w.copy())
    return _COMPILED
