"""Fréchet distance between Gaussians, in float64.

Default method ("eigh"): the symmetric form. With A = sqrt(S1) (from `eigh`, negative
eigenvalues clipped), Tr sqrt(S1 S2) = Tr sqrt(A S2 A) and A S2 A is symmetric positive
semi-definite, so its square-root trace is the sum of the square roots of its (clipped)
`eigvalsh` eigenvalues. Two symmetric eigendecompositions: no complex arithmetic, no
iterative `sqrtm`, no spurious imaginary parts. `scipy.linalg.sqrtm` (pytorch-fid, clean-fid)
and complex `eigvals` of S1 S2 (torch-fidelity) are kept as cross-checks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from grn.errors import UserError
from grn_eval import intervals
from grn_eval.metrics.registry import BOOTSTRAP, PROTOCOL, Row, register_metric

VERSION = "1"  # of fid and rfid
METHODS = ("eigh", "sqrtm", "eigvals")


@dataclass(frozen=True)
class FrechetTerms:
    mean_term: float  # ||mu1 - mu2||^2
    cov_term: float  # Tr(S1) + Tr(S2) - 2 Tr sqrt(S1 S2)
    method: str

    @property
    def total(self) -> float:
        return self.mean_term + self.cov_term


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (N - 1), in float64, of an [N, D] feature matrix."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    if n < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {n}")
    if n < d:
        warnings.warn(
            f"only {n} samples for {d}-dimensional features: the covariance is rank-deficient and the "
            f"Fréchet distance is strongly biased upward; compare only numbers with the same N",
            RuntimeWarning, stacklevel=2,
        )
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: str = "eigh") -> float:
    """Tr sqrt(S1 S2) for symmetric PSD S1, S2."""
    if method == "eigh":
        a = _sqrt_psd(sigma1)
        m = a @ sigma2 @ a
        m = (m + m.T) / 2  # exact symmetry against rounding
        return float(np.sqrt(np.clip(np.linalg.eigvalsh(m), 0, None)).sum())
    if method == "sqrtm":
        root = scipy.linalg.sqrtm(sigma1 @ sigma2)
        return float(np.real(np.trace(root)))
    if method == "eigvals":
        eig = np.linalg.eigvals(sigma1 @ sigma2)
        return float(np.sqrt(eig.astype(np.complex128)).real.sum())
    raise ValueError(f"unknown method '{method}'; allowed: {METHODS}")


def frechet_terms(mu1, sigma1, mu2, sigma2, method: str = "eigh") -> FrechetTerms:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise UserError(f"statistics do not match (a reference statistics file of another protocol?): "
                        f"mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    for name, arr in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise UserError(f"non-finite values in {name}: the features or statistics (file) are broken")
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2, method)
    cov_term = float(np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    return FrechetTerms(float(diff @ diff), cov_term, method)


def frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "eigh") -> float:
    """Fréchet distance d^2 between N(mu1, sigma1) and N(mu2, sigma2) (the FID formula)."""
    return frechet_terms(mu1, sigma1, mu2, sigma2, method).total


def frechet_distance_torch(mu1, sigma1, mu2, sigma2, device="cpu") -> float:
    """The symmetric eigh form in float64 with torch (runs on a GPU when given one)."""
    import torch

    t = [torch.as_tensor(np.asarray(a, np.float64), device=device) for a in (mu1, sigma1, mu2, sigma2)]
    m1, s1, m2, s2 = t
    w, v = torch.linalg.eigh(s1)
    a = (v * w.clamp(min=0).sqrt()) @ v.T
    m = a @ s2 @ a
    tr = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    diff = m1 - m2
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr)


# ---------------------------------------------------------------------------------------
# The Fréchet distance of many weighted copies of a feature set at once (bootstrap replicates: draw
# counts; subsets for FID-infinity: 0/1), in the span of the samples: with the centred, weighted rows
# C1 = diag(sqrt w)(X - 1 mu^T) and S1 = C1^T C1 / (n1 - 1) (likewise C2, S2), the non-zero eigenvalues of
# S1 S2 are the squared singular values of C1 C2^T / sqrt((n1 - 1)(n2 - 1)), so Tr sqrt(S1 S2) is the sum of
# those singular values; every term comes from the Gram matrices X X^T, Y Y^T, X Y^T, computed once. Exact,
# and O(n^3) per copy instead of O(d^3): the cheap side while n <= d (the embedded suites: n 250, d 2048).
# Against statistics only (mu2, S2), Tr sqrt(S1 S2) is the root trace of C1 S2 C1^T / (n1 - 1).
# ---------------------------------------------------------------------------------------

_CHUNK = 2**23  # float64 elements per batch of copies (64 MiB)


def _weighted_mean_terms(k_xx, w):
    """(||mu||^2, Tr S) of each weighted copy, from the Gram matrix of centred features."""
    n = w.sum(1)
    mu2 = ((w @ k_xx) * w).sum(1) / n**2
    return mu2, ((w * k_xx.diagonal()).sum(1) - n * mu2) / (n - 1)


def frechet_weighted(x, y=None, w=None, v=None, mu2=None, sigma2=None, device="cpu"):
    """FID of every weighted copy of `x` (w [B, n1]) against `y` weighted by v [B, n2] (v None: y as is), or
    against the statistics (mu2, sigma2) when y is None. Returns [B] float64."""
    import torch

    def t(a):
        return torch.as_tensor(np.asarray(a, np.float64), device=device)

    x = t(x)
    w = t(w) if w is not None else torch.ones(1, len(x), dtype=torch.float64, device=device)
    centre = t(mu2) if y is None else t(y).mean(0)  # the distance does not depend on a common shift
    x = x - centre
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
    y = t(y) - centre
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
    return frechet_rows(ctx, "fid", ctx.inception(ctx.options["protocol"]))


def frechet_rows(ctx, name: str, inc) -> list[dict]:
    """The row of a Fréchet distance between the samples' features and the reference statistics (fid, sfid)."""
    terms = frechet_terms(*gaussian_stats(inc.features), inc.mu, inc.sigma)
    return [ctx.row(name, terms.total, {**inc.protocol, "sqrt_trace": terms.method}, _terms_extra(terms),
                    ci=fid_interval(ctx, terms.total, inc.features, inc.stats_features, inc.mu, inc.sigma))]


def _rfid(ctx) -> list[dict]:
    protocol = ctx.options["protocol"]
    ex = ctx.extractor(protocol)
    mu_r, sig_r, ref, _ = ctx.reference_stats(protocol)
    pool = ctx.features(ctx.samples, protocol)["pool"]
    terms = frechet_terms(*gaussian_stats(pool), mu_r, sig_r)
    ci = fid_interval(ctx, terms.total, pool, ref, mu_r, sig_r, paired=ref is not None and len(ref) == len(pool))
    return [ctx.row("rfid", terms.total, {**ex.protocol, "reference": ctx.reference_provenance,
                                          "sqrt_trace": terms.method}, _terms_extra(terms), ci=ci)]


register_metric(key="fid", task="generation", version=VERSION, compute=_fid, order=10,
                options={"protocol": PROTOCOL, "bootstrap": BOOTSTRAP},
                rows=(Row("fid", "lower", "FID", 2, floor=0.5),))
register_metric(key="rfid", task="reconstruction", version=VERSION, compute=_rfid, order=40,
                options={"protocol": PROTOCOL, "bootstrap": BOOTSTRAP},
                rows=(Row("rfid", "lower", "rFID", 2, floor=0.5),))
