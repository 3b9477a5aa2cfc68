"""Compare the results of several evaluation runs in one table and one set of figures.

A run is the output folder of ``faceset evaluate`` (or of ``faceset benchmark``, one folder
per method): its ``run.json`` names the protocol, the dataset (a name and a key hashed from
the image list or the scored pairs) and, per method, the statistics per challenge, the file
of pooled errors and the images that were missing or failed. Runs of different protocols
(NoW vs its metrical variant vs MICC...) or of different datasets are refused, never mixed.

The table has methods as rows and challenge x statistic columns (the NoW paper's layout),
then the number of scored images and of missing or failed ones, a rank (by the median over
all challenges for NoW, by the mean RMSE for MICC / FaceWarehouse) and the source of the
row. Published reference rows (``evaluation.references``) follow the measured ones under
their own label and source; they have no rank, and no figure or statistic includes them.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.meshio import atomic_write_text
from evaluation.now import CHALLENGES
from evaluation.references import REFERENCE_SETS, ReferenceRow

RUN_FILE = "run.json"
RUN_FORMAT = "faceset-evaluate-run/1"
STATISTICS = ("median", "mean", "std")
# the statistic a protocol's rank is taken from, and in which column
RANK_BY = {"now": ("all", "median"), "now-metrical": ("all", "median"),
           "micc": ("micc", "mean"), "facewarehouse": ("facewarehouse", "mean")}
PROTOCOL_NAMES = {"now": "NoW (non-metrical)", "now-metrical": "NoW (metrical)",
                  "micc": "MICC Florence (Deep3DFace protocol)",
                  "facewarehouse": "FaceWarehouse (Deep3DFace protocol)"}


def text_key(lines: list[str]) -> str:
    """A short stable key of a dataset description (sorted lines), to tell datasets apart."""
    digest = hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()
    return digest[:16]


# ---- the run manifest (written by ``faceset evaluate``) ------------------------------------

def update_run_manifest(out_dir: str | os.PathLike, protocol: str, dataset_name: str,
                        dataset_key: str, method: str, entry: dict,
                        parameters: dict | None = None) -> Path:
    """Add (or replace) ``method`` in ``<out_dir>/run.json``; refuse a folder that already
    holds a run of another protocol or dataset. ``entry``: selection (a challenge or ""),
    statistics {challenge: {median, mean, std, images, missing}}, errors (file name of the
    pooled errors), problems [{name, status, detail}]. ``parameters``: settings of the
    protocol that change its numbers (MICC's radius...); runs compare only when equal."""
    path = Path(out_dir) / RUN_FILE
    manifest = {"format": RUN_FORMAT, "protocol": protocol, "parameters": parameters or {},
                "dataset": {"name": dataset_name, "key": dataset_key}, "methods": {}}
    if path.is_file():
        existing = read_manifest(path)
        if ((existing["protocol"], existing.get("parameters", {}), existing["dataset"]["key"])
                != (protocol, parameters or {}, dataset_key)):
            raise ValueError(
                f"{out_dir}: already holds a {_protocol_label(existing['protocol'], existing.get('parameters'))} "
                f"run on dataset {existing['dataset']['name']!r} ({existing['dataset']['key']}); "
                f"this one is {_protocol_label(protocol, parameters)} on {dataset_name!r} "
                f"({dataset_key}): write it to another --out")
        manifest["methods"] = existing["methods"]
    manifest["methods"][method] = entry
    atomic_write_text(path, json.dumps(manifest, indent=1, default=_json_number) + "\n")
    return path


def _protocol_label(protocol: str, parameters: dict | None) -> str:
    settings = ", ".join(f"{k} {v}" for k, v in sorted((parameters or {}).items()))
    return protocol + (f" ({settings})" if settings else "")


def _json_number(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_manifest(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable run manifest ({err})") from err
    if manifest.get("format") != RUN_FORMAT:
        raise ValueError(f"{path}: not a faceset evaluate run (format {manifest.get('format')!r})")
    return manifest


# ---- loading runs --------------------------------------------------------------------------

@dataclass
class MethodResult:
    """One method of one run. statistics: {challenge: {median, mean, std, images, missing}}
    in mm; errors_file: the pooled errors (the NoW ``computed_distances`` dict format)."""

    method: str
    run: Path
    protocol: str
    dataset_name: str
    dataset_key: str
    selection: str
    statistics: dict[str, dict]
    errors_file: Path | None
    problems: list[dict] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    label: str = ""

    @property
    def protocol_label(self) -> str:
        return _protocol_label(self.protocol, self.parameters)

    def errors(self) -> np.ndarray:
        """All pooled errors (mm) of this method, (N,) float64."""
        if self.errors_file is None or not self.errors_file.is_file():
            raise FileNotFoundError(f"{self.errors_file or self.run}: the run's error file is missing")
        data = np.load(self.errors_file, allow_pickle=True).item()
        arrays = [np.asarray(d, dtype=np.float64).ravel() for d in data["computed_distances"]]
        return np.concatenate(arrays) if arrays else np.zeros(0)


def load_run(folder: str | os.PathLike) -> list[MethodResult]:
    """The methods of one run folder (``run.json``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: run folder not found")
    path = folder / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {RUN_FILE}; is it the --out folder of "
                                "'faceset evaluate' or of one 'faceset benchmark' method?")
    manifest = read_manifest(path)
    results = []
    for method, entry in manifest["methods"].items():
        statistics = dict(entry["statistics"])
        if entry.get("selection"):
            statistics.pop("all", None)  # the pooled "all" of a one-challenge run is that challenge
        results.append(MethodResult(
            method, folder, manifest["protocol"], manifest["dataset"]["name"],
            manifest["dataset"]["key"], entry.get("selection", ""), statistics,
            folder / entry["errors"] if entry.get("errors") else None, entry.get("problems", []),
            manifest.get("parameters", {})))
    if not results:
        raise ValueError(f"{path}: the run has no method")
    return results


def check_comparable(results: list[MethodResult]) -> None:
    """Refuse runs of different protocols or datasets, naming each group of folders."""
    for attribute, what in (("protocol_label", "protocols"), ("dataset_key", "datasets")):
        groups: dict[str, list[str]] = {}
        for result in results:
            value = getattr(result, attribute)
            if attribute == "dataset_key":
                value = f"{result.dataset_name!r} (key {value})"
            groups.setdefault(value, [])
            if str(result.run) not in groups[value]:
                groups[value].append(str(result.run))
        if len(groups) > 1:
            listing = "; ".join(f"{value}: {', '.join(runs)}" for value, runs in groups.items())
            raise ValueError(f"cannot compare runs of different {what} in one table ({listing}); "
                             "compare each group separately")


def _label_rows(results: list[MethodResult]) -> None:
    """Row labels: the method name, with its run folder where two runs share a name; a
    method given twice by the same folder is refused."""
    seen: dict[str, list[MethodResult]] = {}
    for result in results:
        seen.setdefault(result.method, []).append(result)
    for method, group in seen.items():
        folders = [str(r.run) for r in group]
        if len(set(folders)) < len(folders):
            raise ValueError(f"{folders[0]}: given more than once")
        for result in group:
            result.label = method if len(group) == 1 else f"{method} ({result.run.name})"
        if len({r.label for r in group}) < len(group):
            for result in group:
                result.label = f"{method} ({result.run})"


# ---- the comparison ------------------------------------------------------------------------

@dataclass
class Comparison:
    """Measured results of one protocol on one dataset, plus optional reference rows."""

    results: list[MethodResult]
    references: tuple[ReferenceRow, ...] = ()
    reference_description: str = ""

    @property
    def protocol(self) -> str:
        return self.results[0].protocol

    @property
    def dataset(self) -> str:
        return self.results[0].dataset_name

    def challenges(self) -> list[str]:
        present = {c for r in self.results for c in r.statistics}
        present |= {ref.challenge for ref in self.references}
        order = [c for c in CHALLENGES if c in present]
        order += sorted(c for c in present if c not in CHALLENGES and c != "all")
        if len(order) == 1 and "all" in present:
            return ["all"]  # one challenge: its columns would repeat "all" (the caption names it)
        return order + (["all"] if "all" in present else [])

    def statistics(self) -> list[str]:
        present = {s for r in self.results for stats in r.statistics.values() for s in stats}
        return [s for s in STATISTICS if s in present]

    def ranks(self) -> dict[str, int]:
        """Rank of each measured row (1 = lowest error) by RANK_BY; references never."""
        challenge, statistic = RANK_BY.get(self.protocol, ("all", "median"))
        scored = [(r.statistics.get(challenge, {}).get(statistic, math.nan), r.label)
                  for r in self.results]
        scored = sorted((value, label) for value, label in scored if _finite(value))
        return {label: rank for rank, (_, label) in enumerate(scored, start=1)}

    def _counts(self, result: MethodResult) -> tuple[int, int]:
        if "all" in result.statistics:
            stats = result.statistics["all"]
            return int(stats.get("images", stats.get("meshes", 0))), int(stats.get("missing", 0))
        values = list(result.statistics.values())
        return (sum(int(s.get("images", s.get("meshes", 0))) for s in values),
                sum(int(s.get("missing", 0)) for s in values))

    def frame(self) -> pd.DataFrame:
        """One row per measured method then per reference: method, kind (measured /
        reference), rank, challenge x statistic columns (mm), scored, missing or failed,
        source."""
        columns = [(c, s) for c in self.challenges() for s in self.statistics()]
        ranks = self.ranks()
        rows = []
        for result in self.results:
            row = {"method": result.label, "kind": "measured", "rank": ranks.get(result.label)}
            for challenge, statistic in columns:
                row[f"{challenge} {statistic}"] = result.statistics.get(challenge, {}).get(statistic)
            row["scored"], row["missing or failed"] = self._counts(result)
            row["source"] = f"measured: {result.run}"
            rows.append(row)
        for ref in self.references:
            row = {"method": ref.method, "kind": "reference", "rank": None}
            for challenge, statistic in columns:
                row[f"{challenge} {statistic}"] = (getattr(ref, statistic, None)
                                                   if challenge == ref.challenge else None)
            row["scored"] = row["missing or failed"] = None
            row["source"] = f"published: {ref.source}"
            rows.append(row)
        frame = pd.DataFrame(rows)
        value_columns = [f"{c} {s}" for c, s in columns]
        frame[value_columns] = frame[value_columns].astype(float)
        for column in ("rank", "scored", "missing or failed"):
            frame[column] = frame[column].astype("Int64")
        return frame

    def to_csv(self) -> str:
        buffer = io.StringIO()
        self.frame().to_csv(buffer, index=False)
        return buffer.getvalue()

    def caption(self) -> str:
        only = {c for r in self.results for c in r.statistics} - {"all"}
        scope = f" (all = its one challenge, {next(iter(only))})" if self.challenges() == ["all"] and len(only) == 1 else ""
        text = (f"{PROTOCOL_NAMES.get(self.protocol, self.protocol)} on {self.dataset}{scope}; errors in mm; "
                f"rank by {' '.join(RANK_BY.get(self.protocol, ('all', 'median')))} among the "
                "measured rows only.")
        if self.references:
            text += (f" Reference rows: published numbers of other methods ({self.reference_description}), "
                     "copied with their source; not measured here, not ranked, in no figure. They "
                     "come from other data than the measured rows: context, not a ranking against them.")
        return text

    def to_markdown(self, digits: int = 2) -> str:
        frame = self.frame()
        values = [c for c in frame.columns if c not in ("method", "kind", "rank", "scored",
                                                       "missing or failed", "source")]
        header = ["method", "rank", *values, "scored", "missing or failed", "source"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        measured = frame[frame["kind"] == "measured"]
        for _, row in measured.iterrows():
            lines.append(_markdown_row(row, values, digits))
        references = frame[frame["kind"] == "reference"]
        if len(references):
            label = f"*Published reference numbers ({self.reference_description}); not measured here*"
            lines.append("| " + " | ".join([label] + [""] * (len(header) - 1)) + " |")
            for _, row in references.iterrows():
                lines.append(_markdown_row(row, values, digits, reference=True))
        return "\n".join(lines) + "\n\n" + self.caption() + "\n"

    def to_latex(self, digits: int = 2) -> str:
        frame = self.frame()
        challenges, statistics = self.challenges(), self.statistics()
        spans = " & ".join(rf"\multicolumn{{{len(statistics)}}}{{c}}{{{_tex(c)}}}" for c in challenges)
        width = 2 + len(challenges) * len(statistics) + 2
        lines = [r"\begin{tabular}{lr" + "r" * (len(challenges) * len(statistics)) + "rr}", r"\toprule",
                 rf"Method & Rank & {spans} & Scored & Missing \\",
                 " & ".join(["", ""] + [_tex(s.capitalize()) for _ in challenges for s in statistics]
                            + ["", ""]) + r" \\", r"\midrule"]
        values = [f"{c} {s}" for c in challenges for s in statistics]
        for _, row in frame[frame["kind"] == "measured"].iterrows():
            lines.append(" & ".join([_tex(row["method"]), _cell(row["rank"], 0)]
                                    + [_cell(row[v], digits) for v in values]
                                    + [_cell(row["scored"], 0), _cell(row["missing or failed"], 0)]) + r" \\")
        references = frame[frame["kind"] == "reference"]
        if len(references):
            lines += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{\emph{{Published reference numbers "
                                   rf"({_tex(self.reference_description)}); not measured here}}}} \\"]
            for _, row in references.iterrows():
                lines.append(" & ".join([r"\emph{" + _tex(row["method"]) + "}", "-"]
                                        + [_cell(row[v], digits) for v in values] + ["-", "-"]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | os.PathLike, digits: int = 2) -> list[Path]:
        """comparison.md / .csv / .tex, cumulative_errors.png (all measured methods, one
        figure) and bars_<challenge>.png (measured methods); returns the paths."""
        from evaluation.plots import plot_challenge_bars, plot_cumulative_errors

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for suffix, text in ((".md", self.to_markdown(digits)), (".csv", self.to_csv()),
                             (".tex", self.to_latex(digits))):
            atomic_write_text(out_dir / f"comparison{suffix}", text)
            written.append(out_dir / f"comparison{suffix}")
        curves = {r.label: r.errors() for r in self.results}
        plot_cumulative_errors(curves, out_dir / "cumulative_errors.png")
        written.append(out_dir / "cumulative_errors.png")
        for challenge in self.challenges():
            values = {r.label: r.statistics[challenge] for r in self.results if challenge in r.statistics}
            if values:
                path = out_dir / f"bars_{challenge}.png"
                plot_challenge_bars(values, path, title=f"{challenge} ({self.dataset})")
                written.append(path)
        return written


def compare_runs(folders: list[str | os.PathLike], reference: str = "none") -> Comparison:
    """Load, check and combine runs; ``reference``: "none" or a key of REFERENCE_SETS
    ("micc" also serves FaceWarehouse runs: the Deep3DFace protocol's published numbers)."""
    if not folders:
        raise ValueError("no run folder given")
    results = [result for folder in folders for result in load_run(folder)]
    check_comparable(results)
    _label_rows(results)
    comparison = Comparison(results)
    if reference != "none":
        protocol = comparison.protocol
        if reference == "micc" and protocol == "facewarehouse":
            reference = "facewarehouse"
        if reference not in REFERENCE_SETS:
            raise ValueError(f"unknown --reference {reference!r}; choose none or one of "
                             f"{sorted(REFERENCE_SETS)}")
        protocols, description, rows = REFERENCE_SETS[reference]
        if protocol not in protocols:
            raise ValueError(f"--reference {reference}: its published numbers are "
                             f"{description}; the runs are {PROTOCOL_NAMES.get(protocol, protocol)}, "
                             "so they would not sit in the same columns")
        comparison.references, comparison.reference_description = rows, description
    return comparison


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _cell(value, digits: int) -> str:
    if value is None or pd.isna(value):
        return "-"
    if digits == 0:
        return str(int(value))
    return f"{float(value):.{digits}f}"


def _markdown_row(row, values: list[str], digits: int, reference: bool = False) -> str:
    name = f"*{row['method']}*" if reference else str(row["method"])
    cells = [name, "-" if reference else _cell(row["rank"], 0)] + [_cell(row[v], digits) for v in values]
    cells += ["-", "-"] if reference else [_cell(row["scored"], 0), _cell(row["missing or failed"], 0)]
    return "| " + " | ".join(cells + [str(row["source"]).replace("|", "/")]) + " |"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(char, char) for char in str(text))
