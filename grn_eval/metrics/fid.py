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
from grn_eval.metrics.registry import PROTOCOL, Row, register_metric

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
# Registration: fid of generated samples, rfid of reconstructions (same formula, same version)
# ---------------------------------------------------------------------------------------


def _terms_extra(terms: FrechetTerms) -> dict:
    return {"mean_term": terms.mean_term, "cov_term": terms.cov_term}


def _fid(ctx) -> list[dict]:
    inc = ctx.inception(ctx.options["protocol"])
    terms = frechet_terms(*gaussian_stats(inc.pool), inc.mu, inc.sigma)
    return [ctx.row("fid", terms.total, {**inc.protocol, "sqrt_trace": terms.method}, _terms_extra(terms))]


def _rfid(ctx) -> list[dict]:
    protocol = ctx.options["protocol"]
    ex = ctx.extractor(protocol)
    mu_r, sig_r, _ = ctx.reference_stats(protocol)
    terms = frechet_terms(*gaussian_stats(ctx.features(ctx.samples, protocol)["pool"]), mu_r, sig_r)
    return [ctx.row("rfid", terms.total, {**ex.protocol, "reference": ctx.reference_provenance,
                                          "sqrt_trace": terms.method}, _terms_extra(terms))]


register_metric(key="fid", task="generation", version=VERSION, compute=_fid, order=10,
                options={"protocol": PROTOCOL}, rows=(Row("fid", "lower", "FID", 2, floor=0.5),))
register_metric(key="rfid", task="reconstruction", version=VERSION, compute=_rfid, order=40,
                options={"protocol": PROTOCOL}, rows=(Row("rfid", "lower", "rFID", 2, floor=0.5),))
