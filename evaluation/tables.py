"""Result tables: collect runs (method x challenge x statistic) and write Markdown, CSV and
LaTeX without optional formatting packages.

The long form has one row per (method, challenge) with columns median, mean, std (mm) and
any counts; ``wide()`` pivots it to methods as rows and (challenge, statistic) columns, the
layout of the NoW and Deep3DFace tables.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field

import pandas as pd

from evaluation.meshio import atomic_write_text

STATISTICS = ("median", "mean", "std")


@dataclass
class ResultTable:
    """Rows of (method, challenge, statistics...); statistics in mm."""

    rows: list[dict] = field(default_factory=list)

    def add(self, method: str, challenge: str, **values: float) -> None:
        """Add (or replace) the figures of one method on one challenge."""
        self.rows = [r for r in self.rows if (r["method"], r["challenge"]) != (method, challenge)]
        self.rows.append({"method": method, "challenge": challenge, **values})

    def frame(self) -> pd.DataFrame:
        """Long form: columns method, challenge, then the statistics in insertion order."""
        return pd.DataFrame(self.rows)

    def wide(self, statistics: tuple[str, ...] = STATISTICS) -> pd.DataFrame:
        """Methods as rows, (challenge, statistic) MultiIndex columns, challenges in the
        order first added."""
        frame = self.frame()
        present = [s for s in statistics if s in frame.columns]
        order = list(dict.fromkeys(frame["challenge"]))
        wide = frame.pivot(index="method", columns="challenge", values=present)
        wide = wide.swaplevel(0, 1, axis=1).reindex(list(dict.fromkeys(frame["method"])))
        columns = [(c, s) for c in order for s in present if (c, s) in wide.columns]
        return wide.reindex(columns=pd.MultiIndex.from_tuples(columns))

    def to_markdown(self, digits: int = 2) -> str:
        """A GitHub Markdown table of ``wide()``; columns "challenge median" etc."""
        wide = self.wide()
        header = ["method"] + [f"{c} {s}" if c else s for c, s in wide.columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method, values in wide.iterrows():
            lines.append("| " + " | ".join([str(method)] + [_number(v, digits) for v in values])
                         + " |")
        return "\n".join(lines) + "\n"

    def to_latex(self, digits: int = 2) -> str:
        """A booktabs LaTeX tabular of ``wide()`` with a challenge header row."""
        wide = self.wide()
        challenges = list(dict.fromkeys(c for c, _ in wide.columns))
        spans = [sum(1 for c, _ in wide.columns if c == name) for name in challenges]
        lines = [r"\begin{tabular}{l" + "r" * len(wide.columns) + "}", r"\toprule",
                 " & ".join(["Method"] + [rf"\multicolumn{{{n}}}{{c}}{{{_tex(c)}}}"
                                          for c, n in zip(challenges, spans)]) + r" \\",
                 " & ".join([""] + [_tex(s.capitalize()) for _, s in wide.columns]) + r" \\",
                 r"\midrule"]
        for method, values in wide.iterrows():
            lines.append(" & ".join([_tex(str(method))] + [_number(v, digits) for v in values])
                         + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """The long form as CSV text (full precision)."""
        buffer = io.StringIO()
        self.frame().to_csv(buffer, index=False)
        return buffer.getvalue()

    def write(self, stem: str | os.PathLike, digits: int = 2) -> list[str]:
        """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.tex`` atomically; returns paths."""
        stem = os.fspath(stem)
        outputs = {f"{stem}.md": self.to_markdown(digits), f"{stem}.csv": self.to_csv(),
                   f"{stem}.tex": self.to_latex(digits)}
        for path, text in outputs.items():
            atomic_write_text(path, text)
        return list(outputs)


def _number(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(char, char) for char in text)
