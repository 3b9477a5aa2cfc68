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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceset.commands import CommandOptions

NOW_CHALLENGES = ("multiview_neutral", "multiview_expressions", "multiview_occlusions",
                  "selfie")                                  # evaluation.now.CHALLENGES
ICP_PROTOCOLS = {"micc": "MICC Florence", "facewarehouse": "FaceWarehouse"}
FOREHEAD_CUT_MM = {"micc": 65.0, "facewarehouse": None}      # the protocols' own defaults


@dataclass(kw_only=True)
class Scoring(CommandOptions):
    """What every protocol takes: predictions, the predicted meshes' folder; out, the output
    folder; method: its name in tables and file names; plots: heat maps / cumulative error
    curve; quiet: no progress bar."""

    predictions: Path
    out: Path
    method: str = "RECON"
    plots: bool = False
    quiet: bool = False


@dataclass(kw_only=True)
class NowEvaluation(Scoring):
    """``faceset evaluate now``: dataset, the NoW folder; imagepaths: its image list (None:
    ``dataset/imagepathsvalidation.txt``); challenge: one of ``NOW_CHALLENGES`` ("" = all);
    metrical: unit scale, rigid refinement only, the predictions in ``unit`` ("mm", "cm",
    "m"); backend: point-to-triangle search ("auto", "open3d", "scipy")."""

    dataset: Path
    imagepaths: Optional[Path] = None
    challenge: str = ""
    metrical: bool = False
    unit: str = "m"
    backend: str = "auto"

    def run(self) -> int:
        import io

        import numpy as np
        import pandas as pd

        from evaluation import now
        from evaluation.meshio import atomic_write_bytes, atomic_write_text
        from evaluation.tables import ResultTable

        from faceset.errors import prepare_output_dir

        dataset = now.NowDataset(self.dataset, imagepaths=self.imagepaths)
        method = self.method + ("_metrical" if self.metrical else "")
        suffix = f"_{self.challenge}" if self.challenge else ""
        prepare_output_dir(self.out)

        records = now.evaluate_now(dataset, self.predictions, self.challenge, self.metrical,
                                   self.unit, self.backend, progress=not self.quiet,
                                   on_record=self._draw)
        frame = pd.DataFrame([r.row() for r in records])
        atomic_write_text(self.out / f"now_per_image{suffix}.csv", frame.to_csv(index=False))

        distances = [r.distances for r in records if r.distances is not None]
        missing = sum(r.status != "ok" for r in records)
        buffer = io.BytesIO()  # the official result file, loadable by their scripts
        np.save(buffer, {"computed_distances": distances, "num_missing_files": missing},
                allow_pickle=True)
        atomic_write_bytes(self.out / f"{method}_computed_distances{suffix}.npy", buffer.getvalue())

        by_challenge = now.challenge_statistics(records)
        pooled = by_challenge["all"]
        atomic_write_text(self.out / f"{method}{suffix}.meanmedian",
                          f"{pooled['median']:.6f} {pooled['mean']:.6f} {pooled['std']:.6f}\n")
        table = ResultTable()
        for challenge, stats in by_challenge.items():
            table.add(method, challenge, **stats)
        table.write(self.out / f"now_table{suffix}")
        _record_now_run(self, dataset, method, by_challenge, records,
                        f"{method}_computed_distances{suffix}.npy")
        if self.plots:
            from evaluation.plots import plot_cumulative_errors

            plot_cumulative_errors({method: np.concatenate(distances) if distances else np.zeros(0)},
                                   self.out / f"cumulative_error{suffix}.png")
        print(f"NoW {self.challenge or 'all challenges'} ({method}): {pooled['images']} images, "
              f"{missing} missing or failed")
        print(f"median {pooled['median']:.4f} mm, mean {pooled['mean']:.4f} mm, "
              f"std {pooled['std']:.4f} mm")
        _report_missing(frame)
        return 1 if missing else 0

    def _draw(self, record) -> None:
        """With ``plots``: the heat map of one scored image (``evaluation.now.NowRecord``)."""
        if self.plots and record.result is not None:
            from evaluation.plots import plot_error_heatmap

            stem = Path(record.image).stem
            plot_error_heatmap(record.result.cropped_scan, record.result.distances,
                               self.out / "heatmaps" / record.subject / record.challenge
                               / f"{stem}.png", title=f"{record.subject} {stem}")


@dataclass(kw_only=True)
class IcpEvaluation(Scoring):
    """``faceset evaluate micc|facewarehouse`` (``protocol``): gt_dir, the ground-truth
    meshes; pairs: a file of "prediction,gt" lines instead of the folder layout; radius:
    the scored ball around the GT nose tip, mm; forehead_cut: drop GT vertices this far
    above the nose tip, mm (0 or less: no cut; None: the protocol's ``FOREHEAD_CUT_MM``);
    gt_scale: factor from the GT files' unit to mm."""

    protocol: str
    gt_dir: Path
    pairs: Optional[Path] = None
    radius: float = 95.0
    forehead_cut: Optional[float] = None
    gt_scale: float = 1.0

    def forehead_cut_mm(self) -> Optional[float]:
        cut = FOREHEAD_CUT_MM[self.protocol] if self.forehead_cut is None else self.forehead_cut
        return cut if cut is not None and cut > 0 else None

    def run(self) -> int:
        import numpy as np
        import pandas as pd

        from evaluation import micc
        from evaluation.meshio import atomic_write_text
        from evaluation.tables import ResultTable

        from faceset.errors import prepare_output_dir

        prepare_output_dir(self.out)
        region = micc.RegionConfig(radius_mm=self.radius, forehead_cut_mm=self.forehead_cut_mm(),
                                   gt_scale=self.gt_scale)
        pairs = (micc.read_pairs(self.pairs, self.gt_dir, self.predictions) if self.pairs
                 else micc.discover_pairs(self.gt_dir, self.predictions))
        if not pairs:
            raise ValueError(f"{self.predictions}: no predicted meshes found "
                             "(expected <subject>/<name>.obj|.ply or --pairs)")
        records = micc.evaluate_pairs(pairs, region, progress=not self.quiet, label=self.protocol)
        self.out.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame([r.row() for r in records])
        atomic_write_text(self.out / f"{self.protocol}_per_mesh.csv", frame.to_csv(index=False))
        stats = micc.run_statistics(records)
        table = ResultTable()
        table.add(self.method, self.protocol, **stats)
        table.write(self.out / f"{self.protocol}_table")
        errors = [r.errors for r in records if r.errors is not None]
        _record_icp_run(self, region, pairs, stats, records, errors)
        if self.plots:
            from evaluation.plots import plot_cumulative_errors

            plot_cumulative_errors({self.method: np.concatenate(errors) if errors else np.zeros(0)},
                                   self.out / f"{self.protocol}_cumulative_error.png")
        print(f"{self.protocol} ({self.method}): {stats['meshes']} meshes, "
              f"{stats['missing']} missing or failed")
        print(f"RMSE {stats['mean']:.4f} +- {stats['std']:.4f} mm (mean +- std over meshes)")
        _report_missing(frame)
        return 1 if stats["missing"] else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score predicted meshes: NoW, MICC Florence, FaceWarehouse (mm)",
        description=__doc__.replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter)
    protocols = parser.add_subparsers(dest="protocol", metavar="PROTOCOL")
    protocols.required = True

    defaults = NowEvaluation   # its class attributes are the field defaults
    now = protocols.add_parser("now", help="the NoW benchmark protocol (scan-to-mesh)")
    _add_folders(now, "--dataset", "NoW folder with imagepathsvalidation.txt, scans/, scans_lmks_onlypp/",
                 "<subject>/<challenge>/<stem>.obj|.ply with <stem>.npy|.txt landmarks")
    now.add_argument("--imagepaths", type=Path, default=defaults.imagepaths,
                     help="image list (default: <dataset>/imagepathsvalidation.txt)")
    now.add_argument("--challenge", default=defaults.challenge, choices=["", *NOW_CHALLENGES],
                     help="evaluate one challenge only (default: all)")
    now.add_argument("--metrical", action="store_true", default=defaults.metrical,
                     help="metrical variant: unit scale, rigid refinement only")
    now.add_argument("--unit", default=defaults.unit, choices=["mm", "cm", "m"],
                     help=f"the predictions' unit for --metrical (default {defaults.unit}, as the official)")
    now.add_argument("--backend", default=defaults.backend, choices=["auto", "open3d", "scipy"],
                     help="point-to-triangle search (default: open3d when installed)")
    _add_scoring_options(now)
    now.set_defaults(func=run)

    defaults = IcpEvaluation
    for name, label in ICP_PROTOCOLS.items():
        sub = protocols.add_parser(name, help=f"the Deep3DFace {label} protocol (scaled ICP)")
        _add_folders(sub, "--gt-dir", "<subject>.obj|.ply (mm) [+ <subject>_nose.txt, <subject>_lmk7.*]",
                     "<subject>/<name>.obj|.ply [+ <name>.npy|.txt landmarks]")
        sub.add_argument("--pairs", type=Path, default=defaults.pairs,
                         help="file of 'prediction,gt' lines instead of the folder layout")
        sub.add_argument("--radius", type=float, default=defaults.radius,
                         help=f"scored ball around the GT nose tip, mm (default {defaults.radius:g})")
        sub.add_argument("--forehead-cut", type=float, default=defaults.forehead_cut,
                         help="drop GT vertices this far above the nose tip (+y), mm; "
                              "0 or less: no cut (default 65 for MICC, none for FaceWarehouse)")
        sub.add_argument("--gt-scale", type=float, default=defaults.gt_scale,
                         help=f"factor taking the GT files' unit to mm (default {defaults.gt_scale:g})")
        _add_scoring_options(sub)
        sub.set_defaults(func=run)


def _add_folders(parser: argparse.ArgumentParser, truth_flag: str, truth_layout: str,
                 predictions_layout: str) -> None:
    """The two folders every protocol scores, each described by its layout: the ground
    truth (``truth_flag``) and the predictions."""
    parser.add_argument(truth_flag, required=True, type=Path, help=truth_layout)
    parser.add_argument("--predictions", required=True, type=Path, help=predictions_layout)


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """The ``Scoring`` fields but ``predictions`` (each protocol words its own layout)."""
    defaults = Scoring
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--method", default=defaults.method,
                        help="method name for tables and the official NoW file names")
    parser.add_argument("--plots", action="store_true", default=defaults.plots,
                        help="write heat maps (NoW) and the cumulative error curve")
    parser.add_argument("--quiet", action="store_true", default=defaults.quiet, help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.protocol == "now":
        return NowEvaluation.from_args(args).run()
    return IcpEvaluation.from_args(args).run()


def _record_now_run(options: NowEvaluation, dataset, method: str, by_challenge: dict, records,
                    errors_file: str) -> None:
    """Add this method to ``<out>/run.json`` (what ``faceset compare`` reads)."""
    from evaluation import now
    from evaluation.compare import text_key, update_run_manifest

    listed = [f"{i.subject}/{i.challenge}/{i.filename}" for i in now.read_image_list(dataset.imagepaths)]
    problems = [{"name": f"{r.subject}/{r.challenge}/{r.image}", "status": r.status,
                 "detail": r.missing or r.message} for r in records if r.status != "ok"]
    update_run_manifest(options.out, "now-metrical" if options.metrical else "now",
                        Path(options.dataset).resolve().name, text_key(listed), method,
                        {"selection": options.challenge, "statistics": by_challenge,
                         "errors": errors_file, "problems": problems})


def _record_icp_run(options: IcpEvaluation, region, pairs, stats: dict, records, errors: list) -> None:
    """``<method>_<protocol>_errors.npy`` (the NoW result format: every GT vertex's error)
    and this method in ``<out>/run.json``."""
    import io

    import numpy as np

    from evaluation.compare import text_key, update_run_manifest
    from evaluation.meshio import atomic_write_bytes

    errors_file = f"{options.method}_{options.protocol}_errors.npy"
    buffer = io.BytesIO()
    np.save(buffer, {"computed_distances": errors, "num_missing_files": stats["missing"]},
            allow_pickle=True)
    atomic_write_bytes(options.out / errors_file, buffer.getvalue())
    problems = [{"name": f"{r.subject}/{Path(r.prediction).name}", "status": r.status,
                 "detail": r.missing or r.message} for r in records if r.status != "ok"]
    gt_files = [p.name for p in Path(options.gt_dir).iterdir() if p.suffix.lower() in (".obj", ".ply")]
    key = text_key(gt_files or sorted({Path(p.gt).name for p in pairs}))
    parameters = {"radius_mm": region.radius_mm, "forehead_cut_mm": region.forehead_cut_mm,
                  "gt_scale": region.gt_scale}
    update_run_manifest(options.out, options.protocol, Path(options.gt_dir).resolve().name, key,
                        options.method, {"selection": "", "statistics": {options.protocol: stats},
                         "errors": errors_file, "problems": problems}, parameters)


def _report_missing(frame) -> None:
    problems = frame[frame["status"] != "ok"] if len(frame) else frame
    for _, row in problems.head(10).iterrows():
        detail = row["missing"] or row["message"]
        name = row.get("image", row.get("prediction", ""))
        print(f"  {row['status']}: {row['subject']} {name}: {detail}")
    if len(problems) > 10:
        print(f"  ... and {len(problems) - 10} more (see the CSV)")
