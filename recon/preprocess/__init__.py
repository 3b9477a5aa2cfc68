"""Preprocessing: detection files, 5-point alignment to the 224 crop, dlib detection and 68
landmarks, skin probability, ArcFace alignment. Modules are imported directly
(``recon.preprocess.align`` ...) so that dlib and torch load only where used."""
