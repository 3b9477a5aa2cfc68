"""Numbers that come from the original Deep3DFaceRecon (SPEC references in brackets)."""

import math

# Coefficient group sizes of the original 257-vector [SPEC 1.1].
BFM_ID_DIM = 80          # identity PCA coefficients
BFM_EXP_DIM = 64         # expression PCA coefficients (Guo et al.)
BFM_TEX_DIM = 80         # albedo PCA coefficients
ANGLE_DIM = 3            # Euler angles x, y, z in radians
GAMMA_DIM = 27           # SH lighting, 3 channels x 9, channel-major
TRANS_DIM = 3            # translation in decimetres
# The groups in the order of the 257-vector (and the keys of the original's .mat files).
COEFF_GROUPS = ("id", "exp", "tex", "angle", "gamma", "trans")

# Camera [SPEC 3].
FOCAL = 1015.0           # focal length in pixels of the 224 crop
CENTER = 112.0           # principal point (both axes), pixels
CAMERA_DISTANCE = 10.0   # camera sits at z = 10 dm looking down -z
IMAGE_SIZE = 224         # side of the aligned crop and of the render
ZNEAR = 5.0              # renderer near plane (dm of camera depth) [SPEC 4]
ZFAR = 15.0              # renderer far plane [SPEC 4]
FOV_DEG = 2.0 * math.degrees(math.atan(CENTER / FOCAL))  # 12.5936 degrees

# Lighting [SPEC 3.10].
INIT_LIGHT_DC = 0.8      # added to the DC SH coefficient of every channel
SH_A = (math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0))
SH_C = (1.0 / math.sqrt(4.0 * math.pi), math.sqrt(3.0) / math.sqrt(4.0 * math.pi),
        3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi))

# Alignment [SPEC 6.3].
RESCALE_FACTOR = 102.0   # target pixels per model unit (dm) in the crop

# BFM09 conversion [SPEC 2.2].
BFM_UNIT_DIVISOR = 1e5   # micrometres -> decimetres
MM_PER_UNIT = 100.0      # 1 model unit = 1 dm = 100 mm
TEXTURE_SCALE = 255.0    # albedo bases are stored in 0-255

# Losses [SPEC 5].
W_COLOR = 1.92
W_LANDMARK = 1.6e-3
W_FEAT = 0.2
W_REG = 3e-4
W_REG_ID = 1.0
W_REG_EXP = 0.8
W_REG_TEX = 1.7e-2
W_GAMMA = 10.0
W_REFLECTANCE = 5.0
PHOTO_EPS = 1e-6                 # inside the per-pixel L2 norm
LANDMARK_HEAVY_WEIGHT = 20.0     # nose ridge 28-30 and inner mouth 60-67 (0-based)
LANDMARK_HEAVY_IDS = (28, 29, 30, 60, 61, 62, 63, 64, 65, 66, 67)

# Standard 5-point 3D template (eyeL, eyeR, nose, mouthL, mouthR), dm [SPEC Appendix C].
TEMPLATE_5PT = (
    (-0.311487, 0.290361, 0.133780),
    (0.309799, 0.289720, 0.131795),
    (0.003253, -0.046179, 0.552442),
    (-0.252169, -0.381339, 0.224057),
    (0.248466, -0.381282, 0.222358),
)

ARCFACE_SIZE = 112      # side of the aligned ArcFace input (and of its 5-point template's frame)

# ArcFace 112x112 5-point target, x, y-down pixels [SPEC 6.4].
ARCFACE_TEMPLATE_112 = (
    (38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
    (41.5493, 92.3655), (70.7299, 92.2041),
)

# NoW benchmark's 7 landmarks as iBUG 68 indices (0-based): right-eye outer, right-eye inner,
# left-eye inner, left-eye outer, subnasale, right mouth corner, left mouth corner
# (the subject's right = image left).
NOW_FROM_IBUG68 = (36, 39, 42, 45, 33, 48, 54)

# Horizontal flip permutation of the 68 iBUG landmarks (new[i] = old[perm[i]]) [SPEC App. C].
FLIP_PERM_68 = (
    16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 26, 25, 24, 23, 22, 21, 20, 19,
    18, 17, 27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
)

# Rasterizer backends of recon.render, by the name every option and CLI flag uses
# ("auto": nvdiffrast on CUDA when installed, else the built-in torch backend).
RENDERER_BACKENDS = ("auto", "torch", "nvdiffrast", "pytorch3d")

# R-Net backbones: the original's ResNet-50 and two small ones for CPU training (recon.rnet).
RNET_ARCHITECTURES = ("resnet50", "resnet18", "mobilenet_v3_small")
