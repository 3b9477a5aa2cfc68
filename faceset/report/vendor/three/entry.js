// The parts of three.js the faceset report viewer uses, exposed as one global.
export {
  WebGLRenderer, Scene, PerspectiveCamera, BufferGeometry, BufferAttribute, Mesh,
  MeshStandardMaterial, MeshBasicMaterial, DirectionalLight, AmbientLight, HemisphereLight,
  Color, Box3, Vector3, DoubleSide, SRGBColorSpace, LinearSRGBColorSpace
} from 'three';
export { OrbitControls } from 'three/examples/jsm/controls/OrbitControls.js';
