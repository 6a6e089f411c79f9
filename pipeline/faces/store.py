"""Tracks, crops and restorations as plain arrays (npz) and JSON: the work directory's formats.

No pickles: a work directory from someone else can never run code. Variable-size images (crops
at each face's native size) are stored one array per frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.faces.scan import ScanResult
from pipeline.types import FaceCrop, FaceRestoration, Shot, Track, TrackFrame


def scan_to_arrays(result: ScanResult) -> dict[str, np.ndarray]:
    rows = [(t.shot, tf) for t in result.tracks for tf in t.frames]
    return {
        "meta": np.array([result.start, result.end, result.detections, int(result.gray)], np.int64),
        "shots": np.array([[s.index, s.start, s.end] for s in result.shots], np.int64).reshape(-1, 3),
        "track_id": np.array([tf.track_id for _, tf in rows], np.int64),
        "shot": np.array([shot for shot, _ in rows], np.int64),
        "frame_index": np.array([tf.frame_index for _, tf in rows], np.int64),
        "box": np.array([tf.box for _, tf in rows], np.float32).reshape(-1, 4),
        "landmarks": np.array([tf.landmarks for _, tf in rows], np.float32).reshape(-1, 5, 2),
        "score": np.array([tf.score for _, tf in rows], np.float32),
        "interpolated": np.array([tf.interpolated for _, tf in rows], bool),
    }


def scan_from_arrays(a: Mapping[str, np.ndarray]) -> ScanResult:
    start, end, detections, gray = (int(v) for v in a["meta"])
    shots = tuple(Shot(int(i), int(s), int(e)) for i, s, e in a["shots"])
    tracks: list[Track] = []
    ids = a["track_id"]
    for tid in dict.fromkeys(ids.tolist()):
        idx = np.nonzero(ids == tid)[0]
        frames = tuple(
            TrackFrame(
                int(tid),
                int(a["frame_index"][i]),
                a["box"][i],
                a["landmarks"][i],
                float(a["score"][i]),
                bool(a["interpolated"][i]),
            )
            for i in idx
        )
        tracks.append(Track(int(tid), int(a["shot"][idx[0]]), frames))
    return ScanResult(start, end, shots, tuple(tracks), detections, bool(gray))


def crops_to_arrays(crops: Sequence[FaceCrop]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {
        "track_id": np.array([c.track_id for c in crops], np.int64),
        "frame_index": np.array([c.frame_index for c in crops], np.int64),
        "crop_to_frame": np.array([c.crop_to_frame for c in crops], np.float64).reshape(-1, 2, 3),
        "gray": np.array([c.gray for c in crops], bool),
    }
    for i, c in enumerate(crops):
        out[f"image_{i}"] = c.image.astype(np.float32)
    return out


def crops_from_arrays(a: Mapping[str, np.ndarray]) -> list[FaceCrop]:
    return [
        FaceCrop(int(t), int(f), a[f"image_{i}"], a["crop_to_frame"][i], bool(a["gray"][i]))
        for i, (t, f) in enumerate(zip(a["track_id"], a["frame_index"], strict=True))
    ]


def restorations_to_arrays(faces: Sequence[FaceRestoration]) -> dict[str, np.ndarray]:
    if not faces:
        return {"track_id": np.zeros(0, np.int64)}
    return {
        "track_id": np.array([f.track_id for f in faces], np.int64),
        "frame_index": np.array([f.frame_index for f in faces], np.int64),
        "latents": np.stack([f.latents for f in faces]).astype(np.float32),  # [T, num_ws, w_dim]
        # float16 halves the store; 11 bits of mantissa is far below 8-bit output precision.
        "image": np.stack([f.image for f in faces]).astype(np.float16),  # [T, R, R, 3]
        "psnr": np.array([f.psnr for f in faces], np.float64),
        "met_bound": np.array([f.met_bound for f in faces], bool),
        "steps": np.array([f.steps for f in faces], np.int64),
    }


def restorations_from_arrays(a: Mapping[str, np.ndarray]) -> list[FaceRestoration]:
    if len(a["track_id"]) == 0:
        return []
    return [
        FaceRestoration(
            int(a["track_id"][i]),
            int(a["frame_index"][i]),
            a["latents"][i],
            a["image"][i].astype(np.float32),
            float(a["psnr"][i]),
            bool(a["met_bound"][i]),
            int(a["steps"][i]),
        )
        for i in range(len(a["track_id"]))
    ]


def track_summary(result: ScanResult) -> list[dict[str, Any]]:
    """Per track: id, shot, frame range, detected and interpolated frame counts (for reports)."""
    return [
        {
            "track_id": t.track_id,
            "shot": t.shot,
            "start": t.start,
            "end": t.end,
            "detected": sum(not f.interpolated for f in t.frames),
            "interpolated": sum(f.interpolated for f in t.frames),
        }
        for t in result.tracks
    ]
