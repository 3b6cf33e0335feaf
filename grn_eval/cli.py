"""`grn-eval`: the harness's command line."""

from __future__ import annotations

import argparse
import sys

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grn-eval", description="GRN-Eval: evaluation harness for visual generators")
    sub = p.add_subparsers(dest="command", required=True)

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
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except W.WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
