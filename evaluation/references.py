"""Published numbers of the original and its peers, to print beside measured rows.

They are other people's measurements on other data (the NoW *test* set, scored by the NoW
organisers; MICC Florence and FaceWarehouse under the Deep3DFace protocol), copied from the
sources named in each row with their tag: [P] primary (the project's own README, an
author's comment), [S] secondary (a third-party table or paper note), [U] a user's report.
A comparison shows them as labelled reference rows and never averages, ranks or plots
them with measured rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceRow:
    """One published result: statistics in mm on ``challenge`` (the column it sits in)."""

    method: str
    challenge: str
    median: float | None
    mean: float
    std: float
    source: str


_DEEP3D_README = "[P] Deep3DFaceRecon_pytorch README"
_SHEAP_NOTE = "[S] SHeaP paper note (ICCV'25)"
_NOW = "NoW non-metrical, test set (scored by the NoW organisers)"

# ANCHORS §0.1: median / mean / std of the NoW non-metrical test-set leaderboard.
NOW_REFERENCES = tuple(ReferenceRow(method, "all", median, mean, std, source) for
                       method, median, mean, std, source in (
    ("TokenFace (ICCV'23)", 0.87, 1.07, 0.88, _SHEAP_NOTE),
    ("MICA (ECCV'22)", 0.91, 1.14, 0.95, _SHEAP_NOTE),
    ("SHeaP (ICCV'25)", 0.97, 1.22, 1.04, _SHEAP_NOTE),
    ("DECA (SIGGRAPH'21)", 1.09, 1.38, 1.18, _DEEP3D_README),
    ("Deep3DFace PyTorch (the original)", 1.11, 1.41, 1.21, _DEEP3D_README),
    ("SMIRK (CVPR'24)", 1.20, 1.47, 1.16, _SHEAP_NOTE),
    ("RingNet (CVPR'19)", 1.21, 1.53, 1.31, _DEEP3D_README),
    ("Deep3DFace TF (CVPRW'19)", 1.23, 1.54, 1.29, _DEEP3D_README),
    ("3DDFA-V2 (ECCV'20)", 1.23, 1.57, 1.39, _DEEP3D_README),
    ("SynergyNet", 1.27, 1.59, 1.31, "[U] issue choyingw/SynergyNet#24, quoting the leaderboard"),
    ("MGCNet", 1.31, 1.87, 2.63, _DEEP3D_README),
    ("PRNet", 1.50, 1.98, 1.88, _DEEP3D_README),
    ("3DMM-CNN", 1.84, 2.33, 2.05, _DEEP3D_README),
))

# ANCHORS §0.3: one table, mean and std (mm) of the per-mesh RMSE under the Deep3DFace
# protocol on MICC Florence and on FaceWarehouse (None: not reported).
_TF_README = "[P] Deep3DFaceReconstruction (TF) README"
_BOTH_READMES = "[P] Deep3DFaceReconstruction and Deep3DFaceRecon_pytorch READMEs"
_DEEP3D_PROTOCOL = (  # method, MICC (mean, std), FaceWarehouse (mean, std), source
    ("Deep3DFace TF (CVPRW'19)", (1.67, 0.50), (1.81, 0.50), _BOTH_READMES),
    ("Deep3DFace PyTorch (the original)", (1.53, 0.45), (1.64, 0.50), _DEEP3D_README),
    ("Deep3DFace PyTorch 2023-04-25 model", (1.54, 0.49), (1.60, 0.44), _DEEP3D_README),
    ("Genova'18", (1.77, 0.53), None, _TF_README),
    ("Tewari'17", None, (2.19, 0.54), _TF_README),
    ("Tewari'18", None, (1.84, 0.38), _TF_README),
)


def _deep3d_protocol_rows(challenge: str) -> tuple[ReferenceRow, ...]:
    """The rows of ``_DEEP3D_PROTOCOL`` with figures on ``challenge`` ("micc" or
    "facewarehouse"), in the table's order."""
    column = {"micc": 1, "facewarehouse": 2}[challenge]
    return tuple(ReferenceRow(row[0], challenge, None, *row[column], row[3])
                 for row in _DEEP3D_PROTOCOL if row[column] is not None)


MICC_REFERENCES = _deep3d_protocol_rows("micc")
FACEWAREHOUSE_REFERENCES = _deep3d_protocol_rows("facewarehouse")

# --reference NAME -> (the protocols its numbers were measured under, what they are, rows)
REFERENCE_SETS = {
    "now": (("now",), _NOW, NOW_REFERENCES),
    "micc": (("micc",), "MICC Florence, Deep3DFace protocol (per-mesh RMSE)", MICC_REFERENCES),
    "facewarehouse": (("facewarehouse",), "FaceWarehouse, Deep3DFace protocol (per-mesh RMSE)",
                      FACEWAREHOUSE_REFERENCES),
}
