"""Reading (PyAV) and writing (ffmpeg) video without losing frames, timestamps, audio or colour tags."""
