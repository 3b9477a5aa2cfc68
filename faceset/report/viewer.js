// The faceset report's 3D viewer: a classic script (file:// pages cannot load ES modules)
// that runs after the vendored three.js bundle, which defines the global FACESET_THREE.
// The mesh comes from <script type="application/json" id="mesh-data">: base64 little-endian
// float32 positions (N*3), uint32 triangle indices (F*3), float32 colours in [0, 1] (N*3)
// and optionally float32 error colours (N*3); units are the model's, y up, +z to the viewer.
(function () {
  "use strict";
  var T = window.FACESET_THREE;
  var container = document.getElementById("viewer");
  var status = document.getElementById("viewer-status");

  function decode(text, Kind) {
    var bytes = Uint8Array.from(atob(text), function (c) { return c.charCodeAt(0); });
    return new Kind(bytes.buffer);
  }

  function webglAvailable() {
    try {
      var probe = document.createElement("canvas");
      return !!(probe.getContext("webgl2") || probe.getContext("webgl"));
    } catch (err) {
      return false;
    }
  }

  if (!webglAvailable()) {
    status.textContent = "This browser has no WebGL: the 3D view is unavailable " +
      "(the mesh files beside this page open in any mesh viewer).";
    return;
  }

  var data = JSON.parse(document.getElementById("mesh-data").textContent);
  var positions = decode(data.positions, Float32Array);
  var geometry = new T.BufferGeometry();
  geometry.setAttribute("position", new T.BufferAttribute(positions, 3));
  geometry.setIndex(new T.BufferAttribute(decode(data.triangles, Uint32Array), 1));
  geometry.computeVertexNormals();
  var colourSets = {albedo: decode(data.colors, Float32Array)};
  if (data.error_colors) {
    colourSets.error = decode(data.error_colors, Float32Array);
  }
  var grey = new Float32Array(positions.length).fill(0.75);
  geometry.setAttribute("color", new T.BufferAttribute(colourSets.albedo.slice(), 3));

  var lit = new T.MeshStandardMaterial({vertexColors: true, roughness: 0.8, metalness: 0.0,
                                        side: T.DoubleSide});
  var flat = new T.MeshBasicMaterial({vertexColors: true, side: T.DoubleSide});
  var mesh = new T.Mesh(geometry, lit);

  var scene = new T.Scene();
  scene.background = new T.Color(0xf4f4f4);
  scene.add(mesh);
  scene.add(new T.HemisphereLight(0xffffff, 0x808080, 1.2));
  var key = new T.DirectionalLight(0xffffff, 1.6);
  key.position.set(0.4, 0.6, 1.0);
  scene.add(key);

  var box = new T.Box3().setFromObject(mesh);
  var centre = box.getCenter(new T.Vector3());
  var size = box.getSize(new T.Vector3()).length();
  var width = container.clientWidth || 640, height = container.clientHeight || 480;
  var camera = new T.PerspectiveCamera(30, width / height, size / 100, size * 20);
  camera.position.set(centre.x, centre.y, centre.z + 1.9 * size);

  var renderer = new T.WebGLRenderer({antialias: true, preserveDrawingBuffer: true});
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  renderer.setSize(width, height);
  container.appendChild(renderer.domElement);
  renderer.domElement.id = "viewer-canvas";

  var controls = new T.OrbitControls(camera, renderer.domElement);
  controls.target.copy(centre);
  controls.update();

  function draw() { renderer.render(scene, camera); }
  controls.addEventListener("change", draw);
  window.addEventListener("resize", function () {
    var w = container.clientWidth, h = container.clientHeight;
    if (w > 0 && h > 0) {
      camera.aspect = w / h;
      camera.updateProjectionMatrix();
      renderer.setSize(w, h);
      draw();
    }
  });

  function option(id) {
    var box = document.getElementById(id);
    return box ? box.checked : false;
  }

  function update() {
    var colours = option("show-error") && colourSets.error ? colourSets.error
      : (option("show-texture") ? colourSets.albedo : grey);
    geometry.getAttribute("color").array.set(colours);
    geometry.getAttribute("color").needsUpdate = true;
    mesh.material = option("show-shading") ? lit : flat;
    lit.wireframe = flat.wireframe = option("show-wireframe");
    var legend = document.getElementById("error-legend");
    if (legend) { legend.hidden = !option("show-error"); }
    draw();
  }
  ["show-texture", "show-shading", "show-wireframe", "show-error"].forEach(function (id) {
    var box = document.getElementById(id);
    if (box) { box.addEventListener("change", update); }
  });
  update();
  status.textContent = "Drag to rotate, scroll to zoom, right-drag to pan.";
  window.FACESET_VIEWER_READY = true;
})();
