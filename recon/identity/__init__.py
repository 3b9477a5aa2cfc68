"""Identity features for the perceptual loss: dlib's face recognition ResNet (offline
default, weights in ``face-recognition-models``) and insightface's ArcFace iResNet-50
(the original's network, user-supplied ``backbone.pth``), behind one encoder interface.
The loss on their features is ``recon.losses.identity_loss``."""

from .dlib_format import DlibFormatError, DlibNetwork, read_dlib_network
from .dlib_resnet import DlibFaceResNet, default_dlib_model_path
from .encoder import ArcFaceIdentityEncoder, DlibIdentityEncoder, IdentityEncoder
from .iresnet import IResNet, load_arcface_backbone
from .factory import configured_identity_encoder, load_identity_encoder

__all__ = [
    "ArcFaceIdentityEncoder", "DlibFaceResNet", "configured_identity_encoder", "DlibFormatError", "DlibIdentityEncoder",
    "DlibNetwork", "IResNet", "IdentityEncoder", "default_dlib_model_path",
    "load_arcface_backbone", "load_identity_encoder", "read_dlib_network",
]
