"""Measurements: consistency (PSNR), temporal steadiness, identity."""
