"""Whole-frame operations: upscaling and compositing restored faces back."""
