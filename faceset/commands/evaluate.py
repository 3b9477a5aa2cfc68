"""``faceset evaluate now|micc|facewarehouse``: millimetre errors of predicted meshes.

    faceset evaluate now --dataset DIR --predictions DIR --out DIR
        [--imagepaths FILE] [--challenge NAME] [--metrical --unit m|cm|mm]
        [--method NAME] [--plots] [--backend auto|open3d|scipy]
    faceset evaluate micc --gt-dir DIR --predictions DIR --out DIR [--pairs FILE] [--plots]
    faceset evaluate facewarehouse --gt-dir DIR --predictions DIR --out DIR [--pairs FILE]

The folder layouts are documented in ``evaluation.now`` and ``evaluation.micc``. A missing
prediction or unreadable mesh is counted and listed in the per-image CSV; it never stops
the run, but the exit code is then 1. Every file is written atomically. ``run.json`` records
the protocol, the dataset and each method's statistics for ``faceset compare`` (several
``--method`` runs may share one ``--out``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score predicted meshes: NoW, MICC Florence, FaceWarehouse (mm)",
        description=__doc__.replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter)
    protocols = parser.add_subparsers(dest="protocol", metavar="PROTOCOL")
    protocols.required = True

    now = protocols.add_parser("now", help="the NoW benchmark protocol (scan-to-mesh)")
    now.add_argument("--dataset", required=True, type=Path,
                     help="NoW folder with imagepathsvalidation.txt, scans/, scans_lmks_onlypp/")
    now.add_argument("--predictions", required=True, type=Path,
                     help="<subject>/<challenge>/<stem>.obj|.ply with <stem>.npy|.txt landmarks")
    now.add_argument("--imagepaths", type=Path, default=None,
                     help="image list (default: <dataset>/imagepathsvalidation.txt)")
    now.add_argument("--challenge", default="",
                     choices=["", "multiview_neutral", "multiview_expressions",
                              "multiview_occlusions", "selfie"],
                     help="evaluate one challenge only (default: all)")
    now.add_argument("--metrical", action="store_true",
                     help="metrical variant: unit scale, rigid refinement only")
    now.add_argument("--unit", default="m", choices=["mm", "cm", "m"],
                     help="the predictions' unit for --metrical (default m, as the official)")
    now.add_argument("--backend", default="auto", choices=["auto", "open3d", "scipy"],
                     help="point-to-triangle search (default: open3d when installed)")
    _common(now)
    now.set_defaults(func=run)

    for name, label in (("micc", "MICC Florence"), ("facewarehouse", "FaceWarehouse")):
        sub = protocols.add_parser(name, help=f"the Deep3DFace {label} protocol (scaled ICP)")
        sub.add_argument("--gt-dir", required=True, type=Path,
                         help="<subject>.obj|.ply (mm) [+ <subject>_nose.txt, <subject>_lmk7.*]")
        sub.add_argument("--predictions", required=True, type=Path,
                         help="<subject>/<name>.obj|.ply [+ <name>.npy|.txt landmarks]")
        sub.add_argument("--pairs", type=Path, default=None,
                         help="file of 'prediction,gt' lines instead of the folder layout")
        sub.add_argument("--radius", type=float, default=95.0,
                         help="scored ball around the GT nose tip, mm (default 95)")
        sub.add_argument("--forehead-cut", type=float, default=65.0 if name == "micc" else None,
                         help="drop GT vertices this far above the nose tip (+y), mm; "
                              "0 or less: no cut (default 65 for MICC, none for FaceWarehouse)")
        sub.add_argument("--gt-scale", type=float, default=1.0,
                         help="factor taking the GT files' unit to mm (default 1)")
        _common(sub)
        sub.set_defaults(func=run)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--method", default="RECON",
                        help="method name for tables and the official NoW file names")
    parser.add_argument("--plots", action="store_true",
                        help="write heat maps (NoW) and the cumulative error curve")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.protocol == "now":
        return _run_now(args)
    return _run_icp_protocol(args)


def _run_now(args: argparse.Namespace) -> int:
    import io

    import numpy as np
    import pandas as pd

    from evaluation import now
    from evaluation.meshio import atomic_write_bytes, atomic_write_text
    from evaluation.tables import ResultTable

    from faceset.errors import prepare_output_dir

    dataset = now.NowDataset(args.dataset, imagepaths=args.imagepaths)
    method = args.method + ("_metrical" if args.metrical else "")
    suffix = f"_{args.challenge}" if args.challenge else ""
    prepare_output_dir(args.out)

    def draw(record: now.NowRecord) -> None:
        if args.plots and record.result is not None:
            from evaluation.plots import plot_error_heatmap

            stem = Path(record.image).stem
            plot_error_heatmap(record.result.cropped_scan, record.result.distances,
                               args.out / "heatmaps" / record.subject / record.challenge
                               / f"{stem}.png", title=f"{record.subject} {stem}")

    records = now.evaluate_now(dataset, args.predictions, args.challenge, args.metrical,
                               args.unit, args.backend, progress=not args.quiet, on_record=draw)
    frame = pd.DataFrame([r.row() for r in records])
    atomic_write_text(args.out / f"now_per_image{suffix}.csv", frame.to_csv(index=False))

    distances = [r.distances for r in records if r.distances is not None]
    missing = sum(r.status != "ok" for r in records)
    buffer = io.BytesIO()  # the official result file, loadable by their scripts
    np.save(buffer, {"computed_distances": distances, "num_missing_files": missing},
            allow_pickle=True)
    atomic_write_bytes(args.out / f"{method}_computed_distances{suffix}.npy", buffer.getvalue())

    by_challenge = now.challenge_statistics(records)
    pooled = by_challenge["all"]
    atomic_write_text(args.out / f"{method}{suffix}.meanmedian",
                      f"{pooled['median']:.6f} {pooled['mean']:.6f} {pooled['std']:.6f}\n")
    table = ResultTable()
    for challenge, stats in by_challenge.items():
        table.add(method, challenge, **stats)
    table.write(args.out / f"now_table{suffix}")
    _record_now_run(args, dataset, method, by_challenge, records,
                    f"{method}_computed_distances{suffix}.npy")
    if args.plots:
        from evaluation.plots import plot_cumulative_errors

        plot_cumulative_errors({method: np.concatenate(distances) if distances else np.zeros(0)},
                               args.out / f"cumulative_error{suffix}.png")
    print(f"NoW {args.challenge or 'all challenges'} ({method}): {pooled['images']} images, "
          f"{missing} missing or failed")
    print(f"median {pooled['median']:.4f} mm, mean {pooled['mean']:.4f} mm, "
          f"std {pooled['std']:.4f} mm")
    _report_missing(frame)
    return 1 if missing else 0


def _run_icp_protocol(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from evaluation import micc
    from evaluation.meshio import atomic_write_text
    from evaluation.tables import ResultTable

    from faceset.errors import prepare_output_dir

    prepare_output_dir(args.out)
    cut = args.forehead_cut if args.forehead_cut is not None and args.forehead_cut > 0 else None
    region = micc.RegionConfig(radius_mm=args.radius, forehead_cut_mm=cut,
                               gt_scale=args.gt_scale)
    pairs = (micc.read_pairs(args.pairs, args.gt_dir, args.predictions) if args.pairs
             else micc.discover_pairs(args.gt_dir, args.predictions))
    if not pairs:
        raise ValueError(f"{args.predictions}: no predicted meshes found "
                         "(expected <subject>/<name>.obj|.ply or --pairs)")
    records = micc.evaluate_pairs(pairs, region, progress=not args.quiet, label=args.protocol)
    args.out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([r.row() for r in records])
    atomic_write_text(args.out / f"{args.protocol}_per_mesh.csv", frame.to_csv(index=False))
    stats = micc.run_statistics(records)
    table = ResultTable()
    table.add(args.method, args.protocol, **stats)
    table.write(args.out / f"{args.protocol}_table")
    errors = [r.errors for r in records if r.errors is not None]
    _record_icp_run(args, region, pairs, stats, records, errors)
    if args.plots:
        from evaluation.plots import plot_cumulative_errors

        plot_cumulative_errors({args.method: np.concatenate(errors) if errors else np.zeros(0)},
                               args.out / f"{args.protocol}_cumulative_error.png")
    print(f"{args.protocol} ({args.method}): {stats['meshes']} meshes, "
          f"{stats['missing']} missing or failed")
    print(f"RMSE {stats['mean']:.4f} +- {stats['std']:.4f} mm (mean +- std over meshes)")
    _report_missing(frame)
    return 1 if stats["missing"] else 0


def _record_now_run(args, dataset, method: str, by_challenge: dict, records, errors_file: str) -> None:
    """Add this method to ``<out>/run.json`` (what ``faceset compare`` reads)."""
    from evaluation import now
    from evaluation.compare import text_key, update_run_manifest

    listed = [f"{i.subject}/{i.challenge}/{i.filename}" for i in now.read_image_list(dataset.imagepaths)]
    problems = [{"name": f"{r.subject}/{r.challenge}/{r.image}", "status": r.status,
                 "detail": r.missing or r.message} for r in records if r.status != "ok"]
    update_run_manifest(args.out, "now-metrical" if args.metrical else "now",
                        Path(args.dataset).resolve().name, text_key(listed), method,
                        {"selection": args.challenge, "statistics": by_challenge,
                         "errors": errors_file, "problems": problems})


def _record_icp_run(args, region, pairs, stats: dict, records, errors: list) -> None:
    """``<method>_<protocol>_errors.npy`` (the NoW result format: every GT vertex's error)
    and this method in ``<out>/run.json``."""
    import io

    import numpy as np

    from evaluation.compare import text_key, update_run_manifest
    from evaluation.meshio import atomic_write_bytes

    errors_file = f"{args.method}_{args.protocol}_errors.npy"
    buffer = io.BytesIO()
    np.save(buffer, {"computed_distances": errors, "num_missing_files": stats["missing"]},
            allow_pickle=True)
    atomic_write_bytes(args.out / errors_file, buffer.getvalue())
    problems = [{"name": f"{r.subject}/{Path(r.prediction).name}", "status": r.status,
                 "detail": r.missing or r.message} for r in records if r.status != "ok"]
    gt_files = [p.name for p in Path(args.gt_dir).iterdir() if p.suffix.lower() in (".obj", ".ply")]
    key = text_key(gt_files or sorted({Path(p.gt).name for p in pairs}))
    parameters = {"radius_mm": region.radius_mm, "forehead_cut_mm": region.forehead_cut_mm,
                  "gt_scale": region.gt_scale}
    update_run_manifest(args.out, args.protocol, Path(args.gt_dir).resolve().name, key, args.method,
                        {"selection": "", "statistics": {args.protocol: stats},
                         "errors": errors_file, "problems": problems}, parameters)


def _report_missing(frame) -> None:
    problems = frame[frame["status"] != "ok"] if len(frame) else frame
    for _, row in problems.head(10).iterrows():
        detail = row["missing"] or row["message"]
        name = row.get("image", row.get("prediction", ""))
        print(f"  {row['status']}: {row['subject']} {name}: {detail}")
    if len(problems) > 10:
        print(f"  ... and {len(problems) - 10} more (see the CSV)")
