"""Plots from results (matplotlib; PNG and PDF): quality vs steps, quality vs latency with the Pareto
front, entropy per sampling step, entropy-guided step counts, HBQ rounds vs reconstruction quality,
quality vs bits per token per quantizer (rate-distortion, with the Pareto front), training curves, sample
grids. Every figure has a title, axis labels with units and a legend where it has series.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from grn_eval.report import LOWER_IS_BETTER, summarize  # noqa: E402


def _save(fig, prefix: Path, rect=(0, 0, 1, 1)) -> list[Path]:
    """Write prefix.png / .pdf; `rect`: the part of the figure the panels may fill (room for a figure legend)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=rect)
    paths = [prefix.with_name(prefix.name + ext) for ext in (".png", ".pdf")]  # appended: names may hold dots
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths


def _yerr(q: pd.DataFrame, index) -> tuple[np.ndarray, str]:
    """Error bars for the rows `index` of a summary: the bootstrap interval (asymmetric) where every row has
    one, else the spread over seeds; and what they are, for the legend."""
    q = q.loc[index]
    if {"ci_low", "ci_high"} <= set(q.columns) and q[["ci_low", "ci_high"]].notna().all().all():
        return np.stack([q["mean"] - q["ci_low"], q["ci_high"] - q["mean"]]).clip(min=0), "95% bootstrap interval"
    return q["std"].to_numpy(), "std over seeds"


def quality_vs_steps(df: pd.DataFrame, metric: str, prefix: Path) -> list[Path]:
    """`metric` against the number of sampling steps, one line per base model (grid over sampler.steps)."""
    s = summarize(df[df["metric"].isin([metric, "mean_steps"])])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for model, g in s.groupby("base_model"):
        q = g[g["metric"] == metric].set_index("model")
        st = g[g["metric"] == "mean_steps"].set_index("model")
        common = q.index.intersection(st.index)
        if len(common) < 1:
            continue
        order = np.argsort(st.loc[common, "mean"].to_numpy())
        x, y = st.loc[common, "mean"].to_numpy()[order], q.loc[common, "mean"].to_numpy()[order]
        err, what = _yerr(q, common)
        ax.errorbar(x, y, yerr=err[..., order], marker="o", capsize=3, label=f"{model} (bars: {what})")
    ax.set_xlabel("sampling steps (mean per image)")
    ax.set_ylabel(f"{metric} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better)")
    ax.set_title(f"{metric} vs sampling steps")
    ax.legend(fontsize=8)
    return _save(fig, prefix)


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated when lower is better on both axes."""
    order = np.argsort(points[:, 0])
    front, best = [], np.inf
    for i in order:
        if points[i, 1] < best:
            front.append(i)
            best = points[i, 1]
    return np.asarray(front, dtype=int)


def quality_vs_latency(df: pd.DataFrame, metric: str, prefix: Path) -> list[Path]:
    s = summarize(df[df["metric"].isin([metric, "seconds_per_image"])])
    qs = s[s["metric"] == metric].set_index("model")
    q = qs["mean"]
    t = s[s["metric"] == "seconds_per_image"].set_index("model")["mean"]
    common = q.index.intersection(t.index)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if len(common):
        pts = np.stack([t[common].to_numpy(), q[common].to_numpy()], 1)
        sign = 1 if metric in LOWER_IS_BETTER else -1
        front = pareto_front(np.stack([pts[:, 0], sign * pts[:, 1]], 1))
        err, what = _yerr(qs, common)
        ax.errorbar(pts[:, 0], pts[:, 1], yerr=err, fmt="none", ecolor="0.6", capsize=2, label=f"bars: {what}")
        for (x, y), name in zip(pts, common):
            ax.scatter(x, y)
            ax.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        f = pts[front]
        ax.plot(f[:, 0], f[:, 1], "k--", lw=1, label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xlabel("latency (seconds per image)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs latency")
    return _save(fig, prefix)


def _entropy_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["metric"] == "mean_steps") & df["available"]]


def entropy_vs_step(df: pd.DataFrame, prefix: Path) -> list[Path]:
    """Mean normalised conditional entropy per step, one line per model, band = spread over seeds."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for model, g in _entropy_rows(df).groupby("model"):
        curves = [json.loads(e)["per_step"].get("entropy_cond") for e in g["extra"]]
        if not all(curves):  # a sampler without token entropies (flow matching)
            continue
        n = min(map(len, curves))
        arr = np.asarray([c[:n] for c in curves])
        x = np.arange(1, n + 1)
        ax.plot(x, arr.mean(0), label=model)
        if len(arr) > 1:
            ax.fill_between(x, arr.min(0), arr.max(0), alpha=0.2)
    ax.set_xlabel("sampling step")
    ax.set_ylabel("mean normalised entropy (fraction of log K)")
    ax.set_title("predictive entropy during refinement")
    ax.legend(fontsize=7)
    return _save(fig, prefix)


def entropy_guided_steps(df: pd.DataFrame, prefix: Path) -> list[Path]:
    """Histogram of per-image step counts for models whose counts vary."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for model, g in _entropy_rows(df).groupby("model"):
        steps = np.concatenate([json.loads(e)["steps_used"] for e in g["extra"]])
        if steps.min() == steps.max():
            continue
        ax.hist(steps, bins=np.arange(steps.min(), steps.max() + 2) - 0.5, alpha=0.6, label=model)
    ax.set_xlabel("steps used per image")
    ax.set_ylabel("images")
    ax.set_title("entropy-guided step counts")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, prefix)


ROUNDS_METRICS = ("psnr", "lpips_vgg", "rfid", "lpips_alex", "rfvd")  # preferred first; the first 3 present


def rounds_vs_quality(df: pd.DataFrame, prefix: Path, metrics=None) -> list[Path]:
    """Reconstruction quality against HBQ rounds; the continuous model as a horizontal line. `metrics`: by
    default the first three of ROUNDS_METRICS the results have (images: PSNR, LPIPS-VGG, rFID; videos: PSNR,
    LPIPS-Alex, rFVD)."""
    metrics = metrics or [m for m in ROUNDS_METRICS if m in set(df["metric"])][:3]
    s = summarize(df[df["metric"].isin(metrics)])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6))
    for ax, m in zip(np.atleast_1d(axes), metrics):
        sub = s[s["metric"] == m]
        rounds = {row["model"]: _rounds_of(df, row["model"]) for _, row in sub.iterrows()}
        disc = sorted((r, v) for (mdl, r), v in zip(rounds.items(), sub["mean"]) if r is not None)
        cont = [v for (mdl, r), v in zip(rounds.items(), sub["mean"]) if r is None]
        if disc:
            ax.plot([r for r, _ in disc], [v for _, v in disc], "o-", label="HBQ, M rounds")
        for v in cont:
            ax.axhline(v, color="k", ls="--", label="continuous (no quantization)")
        ax.set_xlabel("HBQ rounds M (bits per latent channel)")
        ax.set_ylabel(m + (" (dB)" if m == "psnr" else ""))
        ax.set_title(f"{m} vs rounds")
        ax.legend(fontsize=8)
    return _save(fig, prefix)


def _rounds_of(df: pd.DataFrame, model: str):
    """Rounds from the model's provenance (recorded by the tokenizer adapter); None = continuous."""
    value = df.loc[df["model"] == model, "model.rounds"].iloc[0]
    return None if pd.isna(value) else int(value)


QUANTIZER_LABELS = {"hbq": "HBQ", "fsq": "FSQ", "lfq": "LFQ", "bsq": "BSQ", "vq": "VQ", "rvq": "residual VQ"}


def rate_distortion(df: pd.DataFrame, prefix: Path, metrics=("psnr", "lpips_vgg", "rfid")) -> list[Path]:
    """Reconstruction quality against bits per token, one line per quantizer (from the models' provenance:
    `quantizer`, `bits_per_token`), the continuous ceiling as a horizontal line, and the Pareto front over
    every quantized model (no other reaches better quality with at most as many bits)."""
    s = summarize(df[df["metric"].isin(metrics)])
    info = df.drop_duplicates("model").set_index("model")
    info = info.reindex(columns=["model.quantizer", "model.bits_per_token", "model.rounds", "model.trained_rounds"])
    truncated = info["model.rounds"].notna() & (info["model.rounds"] != info["model.trained_rounds"])
    # HBQ decoded at fewer rounds than it was trained with is its own series (one tokenizer, every rate)
    info["series"] = [QUANTIZER_LABELS.get(q, q) if not t else f"HBQ, M = {int(m)} decoded at fewer rounds"
                      for q, t, m in zip(info["model.quantizer"], truncated, info["model.trained_rounds"])]
    info = info[["model.quantizer", "model.bits_per_token", "series"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.4))
    for ax, m in zip(np.atleast_1d(axes), metrics):
        q = s[s["metric"] == m].set_index("model")
        q = q.join(info, how="left")
        discrete = q[q["model.quantizer"].fillna("none") != "none"]
        for name, g in discrete.groupby("series", sort=False):
            g = g.sort_values("model.bits_per_token")
            err, _ = _yerr(g, g.index)
            ax.errorbar(g["model.bits_per_token"], g["mean"], yerr=err, marker="o", ms=4, capsize=2, label=name,
                        ls="--" if "decoded" in name else "-")
        for v in q.loc[q["model.quantizer"].fillna("none") == "none", "mean"]:
            ax.axhline(v, color="k", ls="--", lw=1, label="continuous (ceiling)")
        if len(discrete):
            sign = 1 if m in LOWER_IS_BETTER else -1
            pts = discrete[["model.bits_per_token", "mean"]].to_numpy(float)
            f = pts[pareto_front(np.stack([pts[:, 0], sign * pts[:, 1]], 1))]
            ax.plot(f[:, 0], f[:, 1], ":", color="0.3", lw=1.5, label="Pareto front")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("bits per token (log2 scale)")
        ax.set_ylabel(m + (" (dB)" if m == "psnr" else "") + f" ({'lower' if m in LOWER_IS_BETTER else 'higher'}"
                      " is better)")
        ax.set_title(f"{m} vs bits per token")
    # one legend under the panels: inside, it covers the curves of one panel or another
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 8), fontsize=8,
               frameon=False)
    return _save(fig, prefix, rect=(0, 0.07, 1, 1))


def training_curves(histories: dict[str, list[dict]], prefix: Path, keys=("l1", "aux"), smooth: int = 50) -> list[Path]:
    """Logged training losses against the step, one line per model (`histories`: label -> log records), each a
    running mean over the points logged within `smooth` steps (one batch's loss is noisy; runs log at different
    intervals). Lines whose labels share a first word
    (the quantizer, in the study's names) share a colour and differ in line style, so a dozen stay apart."""
    families = list(dict.fromkeys(label.split()[0] for label in histories))
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    styles, seen = {}, {}
    for label in histories:
        f = label.split()[0]
        styles[label] = ("-", "--", ":", "-.")[seen.get(f, 0) % 4]
        seen[f] = seen.get(f, 0) + 1
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8))
    for ax, key in zip(np.atleast_1d(axes), keys):
        for label, records in histories.items():
            pts = np.array([(r["step"], r[key]) for r in records if r.get(key) is not None], float)
            if len(pts):
                every = float(np.median(np.diff(pts[:, 0]))) if len(pts) > 1 else 1.0
                w = int(min(max(1, round(smooth / every)), len(pts)))
                y = np.convolve(pts[:, 1], np.ones(w) / w, mode="valid")
                ax.plot(pts[w - 1 :, 0], y, lw=1.2, color=colours[label.split()[0]], ls=styles[label], label=label)
        ax.set_xlabel(f"training step (running mean over {smooth} steps)")
        ax.set_ylabel({"l1": "L1 reconstruction loss (log scale)", "aux": "quantizer loss (commitment / entropy)"}
                      .get(key, key))
        if key == "l1":
            ax.set_yscale("log")
        ax.set_title({"l1": "reconstruction loss", "aux": "quantizer's own loss (0 for HBQ, FSQ)"}.get(key, key))
        ax.legend(fontsize=6, ncol=2)
    return _save(fig, prefix)


def sample_grid(images: np.ndarray, labels: np.ndarray, per_class: int, prefix: Path, title: str) -> list[Path]:
    """Rows = classes, columns = the first `per_class` samples of each class."""
    classes = sorted(set(labels.tolist()))
    h, w = images.shape[1:3]
    canvas = np.full((len(classes) * (h + 2), per_class * (w + 2), 3), 255, np.uint8)
    for r, c in enumerate(classes):
        for k, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            canvas[r * (h + 2) : r * (h + 2) + h, k * (w + 2) : k * (w + 2) + w] = images[i]
    fig, ax = plt.subplots(figsize=(per_class * 0.6 + 1, len(classes) * 0.6 + 0.6))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_yticks([r * (h + 2) + h / 2 for r in range(len(classes))], [f"class {c}" for c in classes], fontsize=7)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    return _save(fig, prefix)


def _tile(videos: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """uint8 [N, T, H, W, 3] -> [T, rows*(H+pad), cols*(W+pad), 3]: the videos tiled row by row on white."""
    n, t, h, w, _ = videos.shape
    rows = -(-n // cols)
    canvas = np.full((t, rows * (h + pad), cols * (w + pad), 3), 255, np.uint8)
    for i, v in enumerate(videos):
        r, c = divmod(i, cols)
        canvas[:, r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = v
    return canvas


def sample_videos(videos: np.ndarray, labels: np.ndarray, prompts: list[str] | None, prefix: Path, title: str,
                  cols: int = 10, strips: int = 8, scale: int = 1, fps: int = 8) -> list[Path]:
    """A video setting's samples: an animated GIF of the first sample of every label tiled `cols` per row (for
    the default Moving-MNIST prompts: one row per direction, one column per digit), and a PNG of frame strips
    (one row per sample: its frames left to right) for the first `strips` labels, with their prompts."""
    first = [int(np.flatnonzero(labels == c)[0]) for c in sorted(set(labels.tolist()))]
    tiled = _tile(videos[first], cols)
    tiled = tiled.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest: small frames stay crisp
    prefix.parent.mkdir(parents=True, exist_ok=True)
    gif = prefix.with_name(prefix.name + ".gif")
    import imageio.v3 as iio

    iio.imwrite(gif, tiled, extension=".gif", duration=1000 / fps, loop=0)
    mp4 = write_mp4(tiled, prefix.with_name(prefix.name + ".mp4"), fps)
    picked = first[:strips]
    t, h, w = videos.shape[1:4]
    strip = _tile(videos[picked].transpose(0, 1, 2, 3, 4).reshape(len(picked) * t, 1, h, w, 3), t)[0]
    fig, ax = plt.subplots(figsize=(t * 0.45 + 4.0, len(picked) * 0.5 + 0.6))  # room for the prompts
    ax.imshow(strip, interpolation="nearest")
    names = [prompts[int(labels[i])] if prompts else f"class {int(labels[i])}" for i in picked]
    ax.set_yticks([k * (h + 2) + h / 2 for k in range(len(picked))], names, fontsize=6)
    ax.set_xticks([k * (w + 2) + w / 2 for k in range(t)], [str(k) for k in range(t)], fontsize=6)
    ax.set_xlabel("frame")
    ax.set_title(title, fontsize=8)
    return [gif, *([mp4] if mp4 else []), *_save(fig, prefix.with_name(prefix.name + "_frames"))]


def write_mp4(frames: np.ndarray, path: Path, fps: int) -> Path | None:
    """uint8 frames [T, H, W, 3] as an H.264 MP4 (yuv420p, so odd sizes are padded by one black row / column), for
    players and pages that take no GIF; written next to the target and renamed over it. None, with a note, where
    the `video` extra (imageio-ffmpeg, which ships the ffmpeg binary) is not installed: the GIF beside it holds
    the same frames."""
    import os
    import sys

    try:
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio's FFMPEG plugin runs)
    except ImportError:
        print(f"note: {path.name} not written: MP4 needs the `video` extra (pip install \"grn-eval[video]\")",
              file=sys.stderr)
        return None
    import imageio.v2 as iio2

    t, h, w = frames.shape[:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")  # ffmpeg picks the container from the suffix
    try:
        with iio2.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
                             macro_block_size=2, quality=8) as writer:
            for frame in frames:
                writer.append_data(frame)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
