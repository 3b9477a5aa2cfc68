"""Evaluation suite: millimetre errors of any method's meshes (ours, DECA's, a scan).

Depends on nothing else in the project (numpy, scipy, pandas, matplotlib, trimesh; open3d
only when installed). Modules:

- ``meshio``: OBJ (with vertex colours) / PLY, MeshLab ``.pp``, 7-landmark ``.npy``/``.txt``.
- ``distance``: exact point-to-triangle distances with a spatial index (open3d or scipy).
- ``align``: Procrustes (MATLAB 'best'), scan-to-mesh refinement, scaled point-to-plane ICP.
- ``now``: the NoW protocol on the official folder layout.
- ``micc``: the Deep3DFace MICC Florence / FaceWarehouse protocol.
- ``records``: the per-image / per-mesh record both protocols fill (status, missing, failed).
- ``tables``: result tables (method x challenge x statistic) to Markdown, CSV, LaTeX.
- ``plots``: per-image error heat maps and cumulative error curves.
- ``synthetic``: face-like test meshes with known geometry.
"""
