"""Mesh, picked-point and landmark files: round trips and MeshLab's own layout."""

import numpy as np
import pytest

from evaluation.meshio import (TriangleMesh, read_landmarks, read_mesh, read_obj, read_pp,
                               write_landmarks, write_mesh, write_pp)

MESHLAB_PP = """<!DOCTYPE PickedPoints>
<PickedPoints>
 <DocumentData>
  <DateTime time="15:26:59" date="2018-11-07"/>
  <User name="soubhik"/>
  <DataFileName name="FaMoS_180424_03335_TA.obj"/>
  <templateName name=""/>
 </DocumentData>
 <point y="45.43911" x="-41.28433" active="1" z="-74.55362" name="0"/>
 <point y="43.12555" x="-12.36452" active="1" z="-69.4455" name="1"/>
 <point y="42.96351" x="16.80114" active="1" z="-68.46212" name="2"/>
 <point y="44.56281" x="46.73232" active="1" z="-72.71104" name="3"/>
 <point y="-3.281471" x="1.861587" active="1" z="-59.7825" name="4"/>
 <point y="-28.11237" x="-23.81624" active="1" z="-70.03651" name="5"/>
 <point y="-27.0117" x="26.70098" active="1" z="-69.50474" name="6"/>
</PickedPoints>
"""


def _mesh(with_colors=True):
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(10, 3)) * 50
    faces = np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7], [7, 8, 9]])
    colors = rng.uniform(size=(10, 3)) if with_colors else None
    return TriangleMesh(vertices, faces, colors)


def test_meshlab_pp_file_is_read_in_point_order(tmp_path):
    path = tmp_path / "scan.pp"
    path.write_text(MESHLAB_PP)
    points, names = read_pp(path)
    assert names == [str(i) for i in range(7)]
    np.testing.assert_allclose(points[0], [-41.28433, 45.43911, -74.55362], rtol=1e-7)
    np.testing.assert_allclose(points[4], [1.861587, -3.281471, -59.7825], rtol=1e-7)
    np.testing.assert_array_equal(read_landmarks(path), points)


def test_pp_round_trip_keeps_meshlab_layout(tmp_path):
    points = np.arange(21, dtype=float).reshape(7, 3) + 0.25
    write_pp(tmp_path / "a.pp", points, mesh_name="scan.obj")
    lines = (tmp_path / "a.pp").read_text().splitlines()
    # The NoW reader takes lines 9-15 (0-based 8..14) as the 7 points.
    assert all(line.strip().startswith("<point") for line in lines[8:15])
    np.testing.assert_allclose(read_pp(tmp_path / "a.pp")[0], points)


def test_bad_pp_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pp"
    path.write_text("<PickedPoints><point x='1'/></PickedPoints>")
    with pytest.raises(ValueError, match="broken.pp"):
        read_pp(path)


def test_obj_with_vertex_colours_as_the_original_writes(tmp_path):
    path = tmp_path / "face.obj"
    path.write_text("# deep3d\nv 1.0 2.0 3.0 0.5 0.25 1.0\nv 4 5 6 0 0 0\nv 7 8 9 1 1 1\n"
                    "v 0 0 1 0.1 0.2 0.3\nf 1 2 3\nf 1/1/1 3/3/3 4/4/4\n")
    mesh = read_obj(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_allclose(mesh.vertices[0], [1, 2, 3])
    np.testing.assert_allclose(mesh.colors[0], [0.5, 0.25, 1.0])


def test_obj_quads_and_negative_indices(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf -4 -3 -2 -1\n")
    np.testing.assert_array_equal(read_obj(path).faces, [[0, 1, 2], [0, 2, 3]])


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
@pytest.mark.parametrize("with_colors", [True, False])
def test_mesh_round_trip(tmp_path, suffix, with_colors):
    mesh = _mesh(with_colors)
    write_mesh(tmp_path / f"m{suffix}", mesh)
    back = read_mesh(tmp_path / f"m{suffix}")
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-5)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    if with_colors:
        np.testing.assert_allclose(back.colors, mesh.colors, atol=1 / 255)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_mesh_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.obj"):
        read_mesh(tmp_path / "nothere.obj")
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 9\n")
    with pytest.raises(ValueError, match="bad.obj"):
        read_mesh(tmp_path / "bad.obj")
    with pytest.raises(ValueError, match="unsupported mesh format"):
        read_mesh(tmp_path / "mesh.stl")


@pytest.mark.parametrize("shape", [(7, 3), (1, 7, 3)])
def test_npy_landmarks_either_shape(tmp_path, shape):
    landmarks = np.arange(21.0).reshape(shape)
    np.save(tmp_path / "l.npy", landmarks)
    np.testing.assert_array_equal(read_landmarks(tmp_path / "l.npy"), landmarks.reshape(7, 3))


def test_txt_landmarks_round_trip_and_bad_shape(tmp_path):
    landmarks = np.arange(21.0).reshape(7, 3) / 7
    write_landmarks(tmp_path / "l.txt", landmarks)
    np.testing.assert_allclose(read_landmarks(tmp_path / "l.txt"), landmarks, rtol=1e-6)
    np.save(tmp_path / "six.npy", np.zeros((6, 3)))
    with pytest.raises(ValueError, match=r"six.npy: expected 7 landmarks"):
        read_landmarks(tmp_path / "six.npy")
