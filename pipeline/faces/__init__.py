"""Faces in moving footage: detection, shots, tracks, alignment, paste-back."""
