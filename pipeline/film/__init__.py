"""Whole-frame film restoration before face scanning: flicker, gate weave, dust, scratches, grain.

`pipeline.film.clean.clean_frames` is the entry point; the stages live one per module.
"""
