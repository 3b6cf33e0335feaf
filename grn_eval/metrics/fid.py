"""Fréchet distance between Gaussians, in float64.

Default method ("cholesky"): the symmetric form with a pivoted Cholesky factor. With P^T S1 P = L L^T
(LAPACK's `dpstrf`; L is d x r for the numerical rank r), S1 S2 is similar to L^T P^T S2 P L, an r x r
symmetric positive semi-definite matrix, so Tr sqrt(S1 S2) is the sum of the square roots of its
`eigvalsh` eigenvalues (those below the rounding level counted as 0, `_root_trace`). A covariance of N <
d samples has rank N - 1, so the eigenvalue problem is N x N instead of d x d: 11x faster at N = 250, d
= 2048, and equal to the exact span form (`frechet_weighted`) to rounding (tests/test_fid.py). "eigh" is
the symmetric form without a factor: A = sqrt(S1) from `eigh` (negative eigenvalues clipped) and the
eigenvalues of A S2 A. Neither uses complex arithmetic or an iterative `sqrtm`, so there are no spurious
imaginary parts; the row records which ran. `scipy.linalg.sqrtm` (pytorch-fid, clean-fid, ADM) and
complex `eigvals` of S1 S2 (torch-fidelity) are kept as cross-checks.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.linalg

from grn.data import describe_not_npz
from grn.errors import UserError
from grn_eval import intervals
from grn_eval.features import STATS_DIMS, STATS_KEYS
from grn_eval.metrics.registry import BOOTSTRAP, PROTOCOL, Row, register_metric
from grn_eval.stages import stage

VERSION = "1"  # of fid and rfid
METHODS = ("cholesky", "eigh", "sqrtm", "eigvals")


@dataclass(frozen=True)
class FrechetTerms:
    mean_term: float  # ||mu1 - mu2||^2
    cov_term: float  # Tr(S1) + Tr(S2) - 2 Tr sqrt(S1 S2)
    method: str

    @property
    def total(self) -> float:
        return self.mean_term + self.cov_term


MOMENT_BLOCK = 256  # rows per block of the statistics; the runner's feature blocks are the same (see below)


@dataclass(frozen=True)
class GaussianMoments:
    """Count, mean and centred scatter (sum of (x - mean)(x - mean)^T) of a set of feature vectors, in
    float64. Two sets merge exactly (Chan, Golub and LeVeque's pairwise update), so statistics accumulate
    block by block with one block's features in memory, and, merged in block order, they do not depend on
    where the blocks were computed (any number of processes)."""

    n: int
    mean: np.ndarray
    scatter: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> GaussianMoments:
        f = np.asarray(features, dtype=np.float64)
        mean = f.mean(0)
        c = f - mean
        return cls(len(f), mean, c.T @ c)

    def merge(self, other: GaussianMoments | None) -> GaussianMoments:
        if other is None or other.n == 0:
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        return GaussianMoments(n, self.mean + delta * (other.n / n),
                               self.scatter + other.scatter + np.outer(delta, delta) * (self.n * other.n / n))

    def stats(self, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(mean, unbiased covariance), as `gaussian_stats`."""
        if check:
            check_covariance_size(self.n, len(self.mean))
        return self.mean, self.scatter / (self.n - 1)


MIN_VECTORS = 2  # an unbiased covariance divides by n - 1


def covariance_need(options=None) -> tuple[int, str]:
    """MetricSpec.min_samples of a Fréchet distance: its covariances need 2 vectors per side."""
    return MIN_VECTORS, (f"a covariance, and so a Fréchet distance, needs {MIN_VECTORS} feature vectors per side, and "
                         f"thousands for a meaningful number")


def check_covariance_size(n: int, d: int, what: str = "the feature vectors") -> None:
    """Refuse fewer than 2 vectors (a user's n_samples or reference, so a UserError); warn when a covariance from
    n < d vectors is rank-deficient."""
    if n < MIN_VECTORS:
        raise UserError(f"{what}: {n} feature vector(s); a covariance, and so a Fréchet distance (FID, sFID, FVD), "
                        f"needs at least {MIN_VECTORS} (and thousands for a meaningful number); raise n_samples or "
                        f"the number of reference images")
    if n < d:
        warnings.warn(
            f"only {n} samples for {d}-dimensional features: the covariance is rank-deficient and the "
            f"Fréchet distance is strongly biased upward; compare only numbers with the same N",
            RuntimeWarning, stacklevel=3,
        )


def accumulate(blocks) -> GaussianMoments | None:
    """The moments of the rows of an iterable of [n_i, D] blocks, merged in order."""
    total = None
    for block in blocks:
        m = GaussianMoments.of(block)
        total = m if total is None else total.merge(m)
    return total


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (N - 1), in float64, of an [N, D] feature matrix. Accumulated over blocks
    of MOMENT_BLOCK rows, so that the statistics streamed from the runner's feature blocks (Runner.statistics)
    are these numbers bit for bit; they equal numpy's `cov` to rounding (tests/test_fid.py)."""
    with stage("statistics"):
        f = np.asarray(features, dtype=np.float64)
        check_covariance_size(*f.shape)  # the warning names the caller
        return accumulate(f[s : s + MOMENT_BLOCK] for s in range(0, len(f), MOMENT_BLOCK)).stats(check=False)


# ---------------------------------------------------------------------------------------
# Statistics read from a file (a reference statistics .npz, an ADM batch's mu / sigma, `grn-eval fid --ref`) are
# checked here before any use: the square-root traces above assume symmetric positive semi-definite covariances,
# and given a matrix that is not one they return any number (a negative FID, or a plausible positive one) without
# a sign of trouble.
# ---------------------------------------------------------------------------------------

# max |S - S^T| <= SYMMETRY_RTOL * max |S|. A covariance written by any tool is symmetric to rounding: exactly when
# computed as C^T C, to about sqrt(n) float32 eps (1e-6 at n = 50 000) when a float32 GEMM summed the two triangles
# in different orders. 1e-5 admits those; an array that is not a covariance is asymmetric at the size of its entries.
SYMMETRY_RTOL = 1e-5
# smallest eigenvalue >= -PSD_RTOL * largest. Rounding leaves the null space of a covariance of N < d vectors
# slightly negative: at most about d eps of the largest in float64 (5e-13 at d = 2048; -6e-16 measured), -8e-9
# measured for a 2048-d one stored in float32. 1e-5 is 1000x the float32 level, and a matrix that is not a
# covariance (a sign error, a precision matrix, other numbers) has negative eigenvalues of the order of its
# positive ones.
PSD_RTOL = 1e-5
STATS_FIX = ("give statistics of this feature protocol: the mean (a vector [d]) and the covariance "
             "(numpy.cov(features, rowvar=False), a symmetric positive semi-definite [d, d] matrix) of the features, "
             "in float64")


def _numeric(a, where: str, key: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":  # object, string, complex or bool arrays are not statistics
        raise UserError(f"{where}: '{key}' is an array of {a.dtype}, not real numbers; {STATS_FIX}")
    return a.astype(np.float64)


def check_statistics(mu, sigma, where: str, names: tuple[str, str] = ("mu", "sigma"),
                     dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) in float64 once they are a mean and a covariance: mu a finite vector [d] (d = `dim` when given),
    sigma a finite [d, d] matrix, symmetric to SYMMETRY_RTOL and positive semi-definite to PSD_RTOL. Anything else
    is a UserError naming `where` (the file) and the member (`names`)."""
    mu, sigma = _numeric(mu, where, names[0]), _numeric(sigma, where, names[1])
    if mu.ndim != 1 or mu.size == 0:
        raise UserError(f"{where}: '{names[0]}' has shape {mu.shape}; expected a vector [d]; {STATS_FIX}")
    d = mu.size
    if dim is not None and d != dim:
        raise UserError(f"{where}: '{names[0]}' has {d} dimensions, the features it is compared with have {dim} "
                        f"(statistics of another network or layer); {STATS_FIX}")
    if sigma.shape != (d, d):
        raise UserError(f"{where}: '{names[1]}' has shape {sigma.shape}, '{names[0]}' {mu.shape}; expected a "
                        f"[{d}, {d}] covariance; {STATS_FIX}")
    for key, a in zip(names, (mu, sigma)):
        if not np.isfinite(a).all():
            raise UserError(f"{where}: '{key}' holds {int((~np.isfinite(a)).sum())} NaN/Inf values of {a.size}; "
                            f"{STATS_FIX}")
    scale = float(np.abs(sigma).max())
    asym = float(np.abs(sigma - sigma.T).max())
    if asym > SYMMETRY_RTOL * scale:
        raise UserError(f"{where}: '{names[1]}' is not symmetric (max |S - S^T| = {asym:.3g}, {asym / scale:.2g} of "
                        f"its largest entry; tolerance {SYMMETRY_RTOL:g}): not a covariance; {STATS_FIX}")
    if not _psd_within(sigma, PSD_RTOL):
        ev = np.linalg.eigvalsh((sigma + sigma.T) / 2)
        raise UserError(f"{where}: '{names[1]}' is not positive semi-definite (smallest eigenvalue {ev[0]:.4g}, "
                        f"largest {ev[-1]:.4g}; tolerance -{PSD_RTOL:g} x the largest): not a covariance; {STATS_FIX}")
    return mu, sigma


def _psd_within(sigma: np.ndarray, rtol: float) -> bool:
    """Whether the smallest eigenvalue of symmetric `sigma` is >= -rtol x its largest. A Cholesky factor of
    sigma + tau I exists exactly when the smallest eigenvalue is > -tau; with tau = rtol x a lower bound of the
    largest eigenvalue (the largest diagonal entry, or a few power steps) it decides the common case with d^3 / 3
    operations instead of the eigenvalues' ~4 d^3 / 3, and only a failed factorisation, which may be the bound's
    looseness, is decided by the eigenvalues themselves."""
    sym = (sigma + sigma.T) / 2
    v = np.random.default_rng(0).standard_normal(len(sym))
    for _ in range(20):  # power steps: |Rayleigh quotient| <= the largest |eigenvalue|, a lower bound
        v = sym @ v
        v /= np.linalg.norm(v) or 1.0
    largest = max(float(np.diag(sym).max()), float(abs(v @ sym @ v)))
    try:
        np.linalg.cholesky(sym + rtol * largest * np.eye(len(sym)))
        return True
    except np.linalg.LinAlgError:
        ev = np.linalg.eigvalsh(sym)
        return bool(ev[0] >= -rtol * max(float(ev[-1]), 0.0))


class StatisticsFile(NamedTuple):
    stats: dict[str, np.ndarray]  # the checked pairs it holds (mu / sigma, mu_s / sigma_s), float64
    members: frozenset[str]  # the name of every array in it (arr_0: an ADM batch's images)


def read_statistics(path, where: str | None = None) -> StatisticsFile:
    """The statistics an .npz holds (features.STATS_KEYS: mu / sigma of pool3, mu_s / sigma_s of the spatial
    features), each pair read and checked (`check_statistics`, with the dimension of its layer), and its members.
    A file that is not a readable .npz (text, a pickle, a truncated or damaged zip, a single .npy), a member that
    cannot be read or holds objects, or half a pair is a UserError naming the file and the member. Only those
    members are read (an ADM batch's images stay on disk)."""
    where = where or f"statistics file '{path}'"
    readable = "an .npz written by numpy.savez with the arrays mu, sigma (and mu_s, sigma_s)"
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{where}: no such file; check the path") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # numpy's ways of saying "not an .npz"
        raise UserError(f"{where}: not an .npz archive but {describe_not_npz(Path(path))} ({type(e).__name__}); "
                        f"expected {readable}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise UserError(f"{where}: not an .npz archive but {describe_not_npz(Path(path))}; expected {readable}")
    stats = {}
    with f:
        members = frozenset(f.files)
        for layer, pair in STATS_KEYS.items():
            present = [k for k in pair if k in members]
            if not present:
                continue
            if len(present) == 1:
                missing = next(k for k in pair if k not in members)
                raise UserError(f"{where}: has '{present[0]}' but no '{missing}'; the two go together; {STATS_FIX}")
            arrays = []
            for key in pair:
                try:
                    arrays.append(f[key])
                except Exception as e:  # zip CRC / zlib / header errors: a damaged member; or pickled objects
                    if isinstance(e, ValueError) and "allow_pickle" in str(e):
                        raise UserError(f"{where}: member '{key}' holds Python objects (a pickled array), not numbers; "
                                        f"pickles are never loaded (they can run code); {STATS_FIX}") from None
                    raise UserError(f"{where}: member '{key}' cannot be read ({type(e).__name__}: {e}); the file is "
                                    f"damaged or was not written by numpy.savez; write it again") from None
            stats.update(zip(pair, check_statistics(*arrays, where, pair, STATS_DIMS[layer])))
    return StatisticsFile(stats, members)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _pivoted_factor(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, L) with s[order][:, order] = L L^T, L of shape [d, r] for the numerical rank r (LAPACK's
    pivoted Cholesky `dpstrf` with its default tolerance d u max(diag): what it leaves is rounding)."""
    c, piv, rank, info = scipy.linalg.lapack.dpstrf(s, lower=1)
    if info < 0:
        raise ValueError(f"dpstrf: argument {-info} is invalid")
    return piv - 1, np.tril(c)[:, :rank]


def _root_trace(m: np.ndarray) -> float:
    """Sum of the square roots of the eigenvalues of a symmetric PSD matrix. An eigenvalue below the rounding
    level (d eps times the largest, the tolerance of a numerical rank) is 0: with fewer samples than
    dimensions the null space comes out at +-d eps instead of 0, and the square roots of those values add up
    to about 3e-8 of the distance (measured against the exact span form, `frechet_weighted`, which this then
    equals to 1e-15)."""
    ev = np.linalg.eigvalsh((m + m.T) / 2)  # exact symmetry against rounding
    tol = ev.max(initial=0.0) * len(m) * np.finfo(np.float64).eps
    return float(np.sqrt(np.where(ev > tol, ev, 0.0)).sum())


def trace_sqrt(sigma1: np.ndarray, sigma2: np.ndarray, method: str = "cholesky") -> tuple[float, str]:
    """(Tr sqrt(S1 S2), the method that computed it) for symmetric PSD S1, S2."""
    if method == "cholesky":
        # S1 (the samples, more often the side with fewer vectors): a rank-deficient factor comes out cheap
        # (dpstrf stops at the rank) and makes the eigenvalue problem small; a full-rank one serves as it is
        # (one factorisation, as fast as plain Cholesky: a second one to look for a lower rank of S2 would
        # cost more than it saves in the common case of two full-rank covariances)
        order, low = _pivoted_factor(sigma1)
        return _root_trace(low.T @ sigma2[np.ix_(order, order)] @ low), "cholesky"
    if method == "eigh":
        a = _sqrt_psd(sigma1)
        return _root_trace(a @ sigma2 @ a), "eigh"
    if method == "sqrtm":
        root = scipy.linalg.sqrtm(sigma1 @ sigma2)
        return float(np.real(np.trace(root))), "sqrtm"
    if method == "eigvals":
        eig = np.linalg.eigvals(sigma1 @ sigma2)
        return float(np.sqrt(eig.astype(np.complex128)).real.sum()), "eigvals"
    raise ValueError(f"unknown method '{method}'; allowed: {METHODS}")


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: str = "cholesky") -> float:
    """Tr sqrt(S1 S2) for symmetric PSD S1, S2."""
    return trace_sqrt(sigma1, sigma2, method)[0]


def frechet_terms(mu1, sigma1, mu2, sigma2, method: str = "cholesky") -> FrechetTerms:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise UserError(f"statistics do not match (a reference statistics file of another protocol?): "
                        f"mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    for name, arr in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise UserError(f"non-finite values in {name}: the features or statistics (file) are broken")
    diff = mu1 - mu2
    tr_covmean, used = trace_sqrt(sigma1, sigma2, method)
    cov_term = float(np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    return FrechetTerms(float(diff @ diff), cov_term, used)


def frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "cholesky") -> float:
    """Fréchet distance d^2 between N(mu1, sigma1) and N(mu2, sigma2) (the FID formula)."""
    return frechet_terms(mu1, sigma1, mu2, sigma2, method).total


def _pd_factor_torch(s):
    """The Cholesky factor of a float64 torch matrix when it is positive definite beyond rounding, else None
    (torch has no pivoted Cholesky, so a rank-deficient side goes to the eigh form)."""
    import torch

    low, info = torch.linalg.cholesky_ex(s)
    pivots = low.diagonal() ** 2
    ok = info.item() == 0 and pivots.min() > len(s) * torch.finfo(torch.float64).eps * pivots.max()
    return low if ok else None


def _trace_sqrt_torch(s1, s2, low2=None):
    """Tr sqrt(S1 S2) of float64 torch matrices: L^T S1 L with L the Cholesky factor of S2 (`low2` when the
    caller factorised it once for many S1), else of S1, else the eigh form."""
    import torch

    m = None
    for factor, other in ((s2, s1), (s1, s2)):
        low = low2 if factor is s2 and low2 is not None else _pd_factor_torch(factor)
        if low is not None:
            m = low.T @ other @ low
            break
    if m is None:  # neither positive definite
        w, v = torch.linalg.eigh(s1)
        a = (v * w.clamp(min=0).sqrt()) @ v.T
        m = a @ s2 @ a
    ev = torch.linalg.eigvalsh((m + m.T) / 2)
    tol = ev.max() * len(m) * torch.finfo(torch.float64).eps  # the null space is 0 (see _root_trace)
    return torch.where(ev > tol, ev, 0).sqrt().sum()


def frechet_distance_torch(mu1, sigma1, mu2, sigma2, device="cpu") -> float:
    """The same symmetric forms (Cholesky, else eigh) in float64 with torch (runs on a GPU when given one)."""
    import torch

    m1, s1, m2, s2 = [torch.as_tensor(np.asarray(a, np.float64), device=device) for a in (mu1, sigma1, mu2, sigma2)]
    diff = m1 - m2
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * _trace_sqrt_torch(s1, s2))


# ---------------------------------------------------------------------------------------
# The Fréchet distance of many weighted copies of a feature set at once (bootstrap replicates: draw
# counts; subsets for FID-infinity: 0/1), in one of two exact forms, whichever is cheaper:
#  * the span of the samples (n <= d, the embedded suites: n 250, d 2048): with the centred, weighted rows
#    C1 = diag(sqrt w)(X - 1 mu^T) and S1 = C1^T C1 / (n1 - 1) (likewise C2, S2), the non-zero eigenvalues of
#    S1 S2 are the squared singular values of C1 C2^T / sqrt((n1 - 1)(n2 - 1)), so Tr sqrt(S1 S2) is the sum
#    of those singular values; every term comes from the Gram matrices X X^T, Y Y^T, X Y^T, computed once:
#    O(n^3) per copy and O(n^2) memory. Against statistics only (mu2, S2), Tr sqrt(S1 S2) is the root trace
#    of C1 S2 C1^T / (n1 - 1).
#  * the feature space (n > d: ImageNet's 50 000 samples, where an n x n Gram matrix alone is 20 GB): each
#    copy's weighted mean and covariance, accumulated over row blocks, and the d x d Fréchet step:
#    O(n d^2 + d^3) per copy and O(d^2) memory.
# ---------------------------------------------------------------------------------------

_CHUNK = 2**23  # float64 elements per batch of copies (64 MiB)


def _weighted_mean_terms(k_xx, w):
    """(||mu||^2, Tr S) of each weighted copy, from the Gram matrix of centred features."""
    n = w.sum(1)
    mu2 = ((w @ k_xx) * w).sum(1) / n**2
    return mu2, ((w * k_xx.diagonal()).sum(1) - n * mu2) / (n - 1)


def frechet_weighted(x, y=None, w=None, v=None, mu2=None, sigma2=None, device="cpu", form="auto"):
    """FID of every weighted copy of `x` (w [B, n1]) against `y` weighted by v [B, n2] (v None: y as is), or
    against the statistics (mu2, sigma2) when y is None. Returns [B] float64. `form`: "span", "features" or
    "auto" (the span while every set has at most d rows, else the feature space; both exact, see above)."""
    import torch

    def t(a):
        return torch.as_tensor(np.asarray(a, np.float64), device=device)

    x = t(x)
    w = t(w) if w is not None else torch.ones(1, len(x), dtype=torch.float64, device=device)
    y = None if y is None else t(y)
    centre = t(mu2) if y is None else y.mean(0)  # the distance does not depend on a common shift
    x = x - centre
    if form not in ("auto", "span", "features"):
        raise ValueError(f"unknown form {form!r}; allowed: auto, span, features")
    if form == "features" or (form == "auto" and max(len(x), 0 if y is None else len(y)) > x.shape[1]):
        return _frechet_weighted_features(x, None if y is None else y - centre, w,
                                          None if v is None else t(v), None if y is not None else t(sigma2))
    out = []
    if y is None:  # against statistics: mu2 is the origin now
        s2 = t(sigma2)
        h, k_xx, tr_s2 = x @ s2 @ x.T, x @ x.T, torch.trace(s2)
        for wb in w.split(max(1, _CHUNK // len(x) ** 2)):
            n = wb.sum(1)
            hw = (wb @ h) / n[:, None]
            m = h[None] - hw[:, :, None] - hw[:, None, :] + ((hw * wb).sum(1) / n)[:, None, None]
            r = wb.sqrt()
            m = r[:, :, None] * m * r[:, None, :] / (n - 1)[:, None, None]
            ev = torch.linalg.eigvalsh((m + m.transpose(1, 2)) / 2)
            # rounding leaves the null space (rank <= d < n1) at +-n eps max instead of 0; its square roots
            # would add up to a visible error, so below that tolerance an eigenvalue is 0 (as matrix_rank does)
            tol = ev.amax(1, keepdim=True) * len(x) * torch.finfo(torch.float64).eps
            root = torch.where(ev > tol, ev, 0).sqrt().sum(1)
            mean_term, tr_s1 = _weighted_mean_terms(k_xx, wb)
            out.append(mean_term + tr_s1 + tr_s2 - 2 * root)
        return torch.cat(out).cpu().numpy()
    y = y - centre
    v = t(v) if v is not None else torch.ones(len(w), len(y), dtype=torch.float64, device=device)
    if len(v) != len(w):
        raise ValueError(f"{len(w)} weightings of x but {len(v)} of y")
    g, k_xx, k_yy = x @ y.T, x @ x.T, y @ y.T
    step = max(1, _CHUNK // (len(x) * len(y)))
    for wb, vb in zip(w.split(step), v.split(step)):
        n1, n2 = wb.sum(1), vb.sum(1)
        gv = (vb @ g.T) / n2[:, None]  # X nu            [b, n1]
        wg = (wb @ g) / n1[:, None]  # Y mu (mu^T Y^T)   [b, n2]
        mn = (wg * vb).sum(1) / n2  # mu . nu
        m = g[None] - gv[:, :, None] - wg[:, None, :] + mn[:, None, None]
        m = wb.sqrt()[:, :, None] * m * vb.sqrt()[:, None, :]
        root = torch.linalg.svdvals(m).sum(1) / ((n1 - 1) * (n2 - 1)).sqrt()
        (mu_sq, tr_s1), (nu_sq, tr_s2) = _weighted_mean_terms(k_xx, wb), _weighted_mean_terms(k_yy, vb)
        out.append(mu_sq + nu_sq - 2 * mn + tr_s1 + tr_s2 - 2 * root)
    return torch.cat(out).cpu().numpy()


_ROWS_PER_BLOCK = 8192  # rows of a weighted scatter at a time (8192 x 2048 float64: 128 MiB)


def _weighted_moments(x, w):
    """(mean [d], unbiased covariance [d, d]) of the rows of x with weights w [n] (draw counts)."""
    n = w.sum()
    mean = w @ x / n
    scatter = sum((x[s : s + _ROWS_PER_BLOCK] * w[s : s + _ROWS_PER_BLOCK, None]).T @ x[s : s + _ROWS_PER_BLOCK]
                  for s in range(0, len(x), _ROWS_PER_BLOCK))
    return mean, (scatter - n * mean[:, None] * mean[None, :]) / (n - 1)


def _frechet_weighted_features(x, y, w, v, sigma2):
    """The feature-space form of `frechet_weighted` (x, y centred on the same point; sigma2 when y is None)."""
    import torch

    if y is not None and v is None:
        v = torch.ones(len(w), len(y), dtype=x.dtype, device=x.device)
    if y is not None and len(v) != len(w):
        raise ValueError(f"{len(w)} weightings of x but {len(v)} of y")
    low2 = _pd_factor_torch(sigma2) if y is None else None  # fixed statistics: factorised once, not per copy
    out = []
    for b in range(len(w)):
        mu1, s1 = _weighted_moments(x, w[b])
        if y is None:  # the statistics' mean is the origin
            mu2, s2 = torch.zeros_like(mu1), sigma2
        else:
            mu2, s2 = _weighted_moments(y, v[b])
        diff = mu1 - mu2
        out.append(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * _trace_sqrt_torch(s1, s2, low2))
    return torch.stack(out).cpu().numpy()


# ---------------------------------------------------------------------------------------
# Registration: fid of generated samples, rfid of reconstructions (same formula, same version)
# ---------------------------------------------------------------------------------------


def _terms_extra(terms: FrechetTerms) -> dict:
    return {"mean_term": terms.mean_term, "cov_term": terms.cov_term}


def fid_interval(ctx, estimate: float, pool, reference, mu, sigma, paired: bool = False):
    """The bootstrap interval of an FID: both sets resampled (jointly when `paired`: reconstructions of
    the reference images), or only the samples against statistics from a file (`reference` None)."""
    b = ctx.options["bootstrap"]
    if b < 1:
        return None
    w = intervals.counts(len(pool), b, ctx.seed, f"{ctx.spec.key}:samples")
    if reference is None:
        return intervals.interval(frechet_weighted(pool, None, w, mu2=mu, sigma2=sigma, device=ctx.device), estimate)
    v = w if paired else intervals.counts(len(reference), b, ctx.seed, f"{ctx.spec.key}:reference")
    return intervals.interval(frechet_weighted(pool, reference, w, v, device=ctx.device), estimate)


def _fid(ctx) -> list[dict]:
    return frechet_rows(ctx, "fid")


def frechet_rows(ctx, name: str, layer: str = "pool") -> list[dict]:
    """The row of a Fréchet distance between the samples' features of `layer` and the reference statistics
    (fid, sfid). Without a bootstrap there is nothing to resample, and the statistics are accumulated block
    by block instead of holding every feature (the same value bit for bit)."""
    protocol = ctx.options["protocol"]
    if ctx.options["bootstrap"] < 1:
        st = ctx.inception_statistics(protocol, layer)
        terms, prov, ci = frechet_terms(st.mu_samples, st.sigma_samples, st.mu, st.sigma), st.protocol, None
    else:
        inc = ctx.inception(protocol, layer)
        terms, prov = frechet_terms(*gaussian_stats(inc.features), inc.mu, inc.sigma), inc.protocol
        ci = fid_interval(ctx, terms.total, inc.features, inc.stats_features, inc.mu, inc.sigma)
    return [ctx.row(name, terms.total, {**prov, "sqrt_trace": terms.method}, _terms_extra(terms), ci=ci)]


def _rfid(ctx) -> list[dict]:
    protocol = ctx.options["protocol"]
    ex = ctx.extractor(protocol)
    mu_r, sig_r, ref, *_ = ctx.reference_stats(protocol)
    pool = ctx.features(ctx.samples, protocol)["pool"]
    terms = frechet_terms(*gaussian_stats(pool), mu_r, sig_r)
    ci = fid_interval(ctx, terms.total, pool, ref, mu_r, sig_r, paired=ref is not None and len(ref) == len(pool))
    return [ctx.row("rfid", terms.total, {**ex.protocol, "reference": ctx.reference_provenance,
                                          "sqrt_trace": terms.method}, _terms_extra(terms), ci=ci)]


register_metric(key="fid", task="generation", version=VERSION, compute=_fid, order=10, min_samples=covariance_need,
                compares_reference=True,
                options={"protocol": PROTOCOL, "bootstrap": BOOTSTRAP},
                rows=(Row("fid", "lower", "FID", 2, floor=0.5),))
register_metric(key="rfid", task="reconstruction", version=VERSION, compute=_rfid, order=40,
                min_samples=covariance_need, options={"protocol": PROTOCOL, "bootstrap": BOOTSTRAP},
                rows=(Row("rfid", "lower", "rFID", 2, floor=0.5),))
