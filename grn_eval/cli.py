"""`grn-eval`: the harness's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grn.errors import UserError, run_command
from grn_eval import weights as W


def _cmd_weights_list(args) -> int:
    manifest = W.load_manifest()
    print(f"cache: {W.weights_dir()}  (set GRN_CACHE to move it)")
    for name, spec in manifest["assets"].items():
        carrier = spec.get("carrier", {})
        print(f"\n{name}\n  purpose : {spec['purpose']}\n  license : {spec['license']}")
        print(f"  sources : ${spec['env_var']} > cache/{spec['cache_file']}"
              + (f" > carrier {carrier['pip']} ({carrier['file']})" if carrier else "")
              + (f" > {spec['official']['url']}" if spec.get("official", {}).get("url") else ""))
        print(f"  checks  : feature fingerprint ({len(spec['fingerprint']['values'])} values, tol {W.FINGERPRINT_TOL})"
              + (f"; official sha256 prefix {spec['official']['sha256_prefix']}" if spec.get("official") else ""))
    for clip in manifest["clip_defaults"]:
        print(f"\nclip:{clip}\n  purpose : CLIP score (open_clip)\n  sources : ${W.CLIP_ENV} > Hugging Face hub cache "
              "(never downloaded at run time)")
    return 0


def _print_statuses(statuses) -> int:
    for s in statuses:
        print(f"{s.state.upper():9s} {s.name}\n          {s.detail}")
    code = W.exit_code(statuses)
    print(f"\nexit code {code} (0 all verified; bit 1: a check failed; bit 2: an asset is absent)")
    return code


def _cmd_weights_verify(args) -> int:
    return _print_statuses(W.verify(args.names or None, convert=not args.no_convert))


def _cmd_weights_prepare(args) -> int:
    names = args.names or list(W.load_manifest()["assets"])
    for name in names:
        asset = W.get_asset(name)
        if args.download:
            try:
                asset.download_official()
            except W.WeightsError as e:
                print(f"{name}: {e}", file=sys.stderr)
    return _print_statuses(W.verify(names))


def _cmd_weights_path(args) -> int:
    _, resolved = W.get_asset(args.name).resolve()
    print(resolved.path)
    return 0


def _cmd_weights_fingerprint(args) -> int:
    asset = W.get_asset(args.name)
    model = asset.build(args.file)
    print(asset.fingerprint(model))
    return 0


def _overrides(args) -> dict:
    """Command-line values for suite keys (checked by load_suite like the file's own values)."""
    out = {}
    for key in ("n_samples", "device", "batch_size"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    if getattr(args, "seeds", None) is not None:
        try:
            out["seeds"] = [int(x) for x in args.seeds.split(",")]
        except ValueError:
            raise UserError(f"--seeds {args.seeds!r}: comma-separated integers, e.g. 0,1,2") from None
    if getattr(args, "allow_low_range", False):
        out["allow_low_range"] = True
    return out


def _clip_needs(suite) -> str:
    """A note when a suite's CLIP score needs weights this machine lacks (the run would stop there)."""
    if "clip_score" not in suite.metrics:
        return ""
    o = suite.metrics["clip_score"]
    model, tag = W.load_manifest()["clip_defaults"][0].split("/")
    model, tag = o.get("model", model), o.get("tag", tag)
    try:
        W.find_clip_weights(model, tag, o.get("weights_path"))
        return ""
    except W.WeightsError:
        return f"; to run it provide the CLIP weights clip:{model}/{tag} (${W.CLIP_ENV} or the Hugging Face cache)"


def _cmd_validate(args) -> int:
    from grn_eval.preflight import check_suite
    from grn_eval.suite import load_suite

    bad = 0
    for path in args.suites:
        try:
            s = load_suite(path, check_assets=False)
            check_suite(s)  # what a run checks before it claims its folder, for the files that are there
            needs = f"; to run it set {', '.join(s.needs)}" if s.needs else ""
            needs += _clip_needs(s)
            print(f"ok       {path}: {s.name} ({s.task}), {len(s.models)} model settings, metrics "
                  f"{sorted(s.metrics)}{needs}")
        except UserError as e:
            bad += 1
            print(f"invalid  {e}")
    return 1 if bad else 0


def _cmd_run(args) -> int:
    import os

    from grn_eval.runner import Runner
    from grn_eval.suite import load_suite

    suite = load_suite(args.suite, _overrides(args))
    if "RANK" in os.environ:  # launched by torchrun: shard sampling and features across the processes
        from grn.train import init_distributed

        rank, _, _ = init_distributed()
        if rank != 0:
            Runner(suite, run_dir=args.run_dir, progress=False).run()
            return 0
    runner = Runner(suite, run_dir=args.run_dir, progress=not args.quiet)
    result = runner.run()
    for row in result["rows"]:
        value = "n/a (" + row["reason"] + ")" if row["value"] is None else f"{row['value']:.6g}"
        print(f"{row['model']:40s} seed {row['seed']:<3d} {row['metric']:18s} {value}")
    print(f"results: {runner.run_dir / 'results.json'}")
    return 0


def _cmd_fid(args) -> int:
    import json

    import numpy as np

    from grn.data import load_npz
    from grn_eval.features import STATS_KEYS, InceptionFeatures, use_file_statistics
    from grn_eval.metrics.fid import MIN_VECTORS, frechet_terms, gaussian_stats, read_statistics
    from grn_eval.runner import resolve_device
    from grn_eval.sample_checks import check_pixels

    def checked(path, what):
        images = check_pixels(np.asarray(load_npz(path).images), f"{what} '{path}'", args.allow_low_range)
        if len(images) < MIN_VECTORS:
            raise UserError(f"{what} '{path}' holds {len(images)} image(s); a Fréchet distance needs at least "
                            f"{MIN_VECTORS} (and thousands for a meaningful one)")
        return images

    # every input is read and checked before the network is built: the samples, the reference's statistics
    # (fid.read_statistics: a readable .npz, each pair a mean and a symmetric PSD covariance of its layer) and,
    # when a layer needs them, the reference batch's images
    device = resolve_device(args.device)
    samples = checked(args.samples, "samples")
    ref = read_statistics(args.ref, f"--ref '{args.ref}'")
    stored, has_images = ref.stats, "arr_0" in ref.members
    if not {"mu", "sigma"} <= set(stored) and not has_images:
        raise UserError(f"--ref '{args.ref}': expected mu/sigma statistics or an ADM batch (arr_0); found "
                        f"{sorted(ref.members)}")
    from_file = {layer: use_file_statistics(stored, layer, args.protocol, has_images) for layer in STATS_KEYS}
    ref_images = checked(args.ref, "reference batch") if has_images and not all(from_file.values()) else None
    ex = InceptionFeatures(args.protocol, device)
    feats = ex(samples, progress=True)
    ref_feats = None if ref_images is None else ex(ref_images, progress=True)
    out = {}
    for layer, name in (("pool", "fid"), ("spatial", "sfid")):
        keys = STATS_KEYS[layer]
        if from_file[layer]:
            (mu2, s2), source = (stored[k] for k in keys), f"{keys[0]} / {keys[1]} of the file"
        elif ref_feats is not None:  # the batch's own statistics are TF-Inception ones: other protocols use its images
            (mu2, s2), source = gaussian_stats(ref_feats[layer]), f"computed from {len(ref_feats[layer])} images"
        else:
            continue  # statistics without the spatial part: no sFID
        terms = frechet_terms(*gaussian_stats(feats[layer]), mu2, s2)  # dimensions: checked by read_statistics
        out[name] = {"value": terms.total, "mean_term": terms.mean_term, "cov_term": terms.cov_term,
                     "reference_statistics": source}
    print(json.dumps({**out, "n_samples": len(samples), "reference": f"{args.ref} (sha256 "
                      f"{W.sha256_file(args.ref)[:16]}...)", "protocol": ex.protocol}, indent=1))
    return 0


def _cmd_report(args) -> int:
    from grn_eval import report

    prefix = report.output_prefix(args.out)  # before the runs are read: a bad --out ends here
    df = report.load_results(args.runs)
    for path in report.export(df, prefix):
        print(f"wrote {path}")
    print(report.summarize(df).to_string(index=False, max_colwidth=48))
    return 0


def _cmd_table(args) -> int:
    from grn_eval import report, tables

    prefix = report.output_prefix(args.out)
    df = report.load_results(args.runs)
    lit = tables.read_literature(args.literature or [])
    metrics = args.metrics.split(",") if args.metrics else sorted(set(df["metric"]))
    written = tables.write_tables(df, metrics, prefix, args.title, lit)
    for path in written:
        print(f"wrote {path}")
    print(written[0].read_text())
    return 0


def _cmd_gate(args) -> int:
    import pandas as pd

    from grn_eval import gate, report

    # Damaged files and a run that is not like for like raise UserError: main() prints one line, exit 1.
    if args.update:
        path = gate.check_baseline_path(args.baseline)
        df = report.load_results(args.runs)
        baseline = gate.make_baseline(df, path.stem)  # refuses non-finite values before anything is written
        gate.write_baseline(baseline, path)
        digests = len(baseline["samples_sha256"])
        print(f"wrote baseline {args.baseline} from {len(df)} rows (sample digests of {digests} model(s)); review it "
              f"before committing")
        return 0
    baseline = gate.read_baseline(args.baseline)
    df = report.load_results(args.runs)  # one run per suite: several are refused, naming them
    verdict = gate.compare(df, baseline)  # raises for another suite or other seeds
    for note in gate.notes(df, baseline):
        print(f"note: {note}")
    if verdict.empty:
        print("error: the baseline covers no models or metrics; re-make it with --update", file=sys.stderr)
        return 2
    print(verdict.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
    print("\nsamples against the baseline's, bit for bit for the same seeds (information only: pass or fail is "
          "the verdict above):")
    for model, (state, detail) in gate.samples_identity(df, baseline).items():
        print(f"  {model}: {state} ({detail})")
    print("\nwhat the gate can see (median over models): the smallest move it flags (a smaller one passes "
          "unseen) and the minimum detectable effect (flagged with 80% probability):")
    for _, d in gate.detectable(verdict).iterrows():
        rel = "" if pd.isna(d["relative"]) else f" ({100 * d['relative']:.1f}% of the baseline)"
        mde = "" if pd.isna(d["mde"]) else f", MDE {d['mde']:.4g}"
        own = "" if pd.isna(d["one_seed_half_width"]) else \
            f"; one seed's own 95% interval is +-{d['one_seed_half_width']:.4g}"
        print(f"  {d['metric']}: {d['smallest_flagged']:.4g}{rel}{mde}{own}")
    if gate.failed(verdict):
        print("\nGATE FAILED: see the rows marked REGRESSION / FAIL")
        return 1
    print("\ngate passed")
    return 0


def _cmd_publish(args) -> int:
    from grn.fileio import check_output_name
    from grn_eval import html_report, publish, tables
    from grn_eval.suite import load_suite

    root = Path(args.results)
    html = args.html or args.html_only
    # Every check before anything is written: the suites' names, their runs (or, for --html-only, their
    # published reports), the literature files and the README's markers.
    suites = {name: load_suite(Path(args.suites_dir) / f"{name}.yaml", check_assets=not args.html_only)
              for name in args.suites}
    loaded = {name: (None if args.html_only else publish.newest_results(s, root)) for name, s in suites.items()}
    reports = {name: html_report.read_report(s, root) for name, s in suites.items()} if args.html_only else {}
    lit = tables.read_literature(sorted((root / "literature").glob("*.csv"))) if args.with_literature else None
    if args.readme:
        check_output_name(args.readme, "--readme")
        publish.check_readme(Path(args.readme_file))
        table = root / "tables" / f"{args.readme}.md"
        if not table.is_file() and (args.html_only or args.readme not in {s.name for s in suites.values()}):
            raise UserError(f"--readme {args.readme}: no table '{table}' and this command does not publish suite "
                            f"'{args.readme}'; add it: `grn-eval publish {args.readme} --readme {args.readme}`")
    for name, suite in suites.items():
        written = [] if args.html_only else publish.publish(suite, root, lit, loaded[name])
        if html:
            written.append(html_report.suite_page(suite, root, lit, reports.get(name)))
        for path in written:
            print(f"wrote {path}")
    if html:
        print(f"wrote {html_report.index_page(root, Path(args.suites_dir))}")
    if args.readme:
        publish.update_readme(Path(args.readme_file), root / "tables" / f"{args.readme}.md")
        print(f"README main table <- results/tables/{args.readme}.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grn-eval", description="GRN-Eval: evaluation harness for visual generators")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate suite files")
    v.add_argument("suites", nargs="+")
    v.set_defaults(func=_cmd_validate)

    r = sub.add_parser("run", help="run a suite (resumes an interrupted run)")
    r.add_argument("suite")
    r.add_argument("--n-samples", type=int)
    r.add_argument("--batch-size", type=int)
    r.add_argument("--device", choices=["cpu", "cuda", "auto"])
    r.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2,3,4")
    r.add_argument("--run-dir", help="default: <output_dir>/<suite>/<suite hash>")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--allow-low-range", action="store_true", help="accept images whose pixels never exceed 1")
    r.set_defaults(func=_cmd_run)

    f = sub.add_parser("fid", help="FID and sFID of external samples (ADM .npz) against a reference batch or "
                                      "statistics")
    f.add_argument("samples")
    f.add_argument("--ref", required=True, help="ADM reference batch (arr_0) or statistics npz (mu, sigma)")
    f.add_argument("--protocol", default="tf-inception", choices=["tf-inception", "clean-fid"])
    f.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    f.add_argument("--allow-low-range", action="store_true", help="accept images whose pixels never exceed 1")
    f.set_defaults(func=_cmd_fid)

    rp = sub.add_parser("report", help="results files -> tidy CSV / Parquet and a seed summary")
    rp.add_argument("runs", nargs="+", help="results.json files or folders holding them")
    rp.add_argument("--out", required=True, help="output prefix, e.g. results/reports/mnist_gen")
    rp.set_defaults(func=_cmd_report)

    tb = sub.add_parser("table", help="paper-style Markdown and LaTeX tables")
    tb.add_argument("runs", nargs="+")
    tb.add_argument("--metrics", help="comma-separated, in column order")
    tb.add_argument("--literature", nargs="*", help="CSV files from results/literature/")
    tb.add_argument("--title", default="")
    tb.add_argument("--out", required=True, help="output prefix (.md and .tex are written)")
    tb.set_defaults(func=_cmd_table)

    g = sub.add_parser("gate", help="compare runs with a baseline; non-zero exit on a regression")
    g.add_argument("runs", nargs="+")
    g.add_argument("--baseline", required=True, help="results/baselines/NAME.json")
    g.add_argument("--update", action="store_true", help="write the baseline from these runs instead")
    g.set_defaults(func=_cmd_gate)

    pb = sub.add_parser("publish", help="newest run of each suite -> results/reports, tables, plots")
    pb.add_argument("suites", nargs="+")
    pb.add_argument("--suites-dir", default="suites")
    pb.add_argument("--results", default="results")
    pb.add_argument("--with-literature", action="store_true")
    pb.add_argument("--readme", help="also copy this suite's table into the README's main-table section")
    pb.add_argument("--readme-file", default="README.md")
    pb.add_argument("--html", action="store_true", help="also write results/html/<suite>.html and the index")
    pb.add_argument("--html-only", action="store_true", help="only the HTML pages, from the published reports "
                                                              "(results/reports/<suite>.csv; no run needed)")
    pb.set_defaults(func=_cmd_publish)

    w = sub.add_parser("weights", help="offline-first weights: list, verify, prepare")
    wsub = w.add_subparsers(dest="action", required=True)
    wl = wsub.add_parser("list", help="every asset with its sources and checks")
    wl.set_defaults(func=_cmd_weights_list)
    wv = wsub.add_parser("verify", help="resolve and check assets (converting from carriers when needed)")
    wv.add_argument("names", nargs="*", help="asset names (default: all, including CLIP)")
    wv.add_argument("--no-convert", action="store_true", help="do not convert missing cache files")
    wv.set_defaults(func=_cmd_weights_verify)
    wp = wsub.add_parser("prepare", help="convert assets into the cache and verify them")
    wp.add_argument("names", nargs="*")
    wp.add_argument("--download", action="store_true", help="also fetch official files (needs internet)")
    wp.set_defaults(func=_cmd_weights_prepare)
    wpath = wsub.add_parser("path", help="print the verified file of an asset (for other tools)")
    wpath.add_argument("name")
    wpath.set_defaults(func=_cmd_weights_path)
    wf = wsub.add_parser("fingerprint", help="print a weights file's fingerprint (maintainers)")
    wf.add_argument("name")
    wf.add_argument("file")
    wf.set_defaults(func=_cmd_weights_fingerprint)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    args = parser.parse_args(argv)
    return run_command(args.func, args, "grn-eval", args.debug)


if __name__ == "__main__":
    sys.exit(main())
