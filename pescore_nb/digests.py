"""Fingerprints of images, so that results and models can say which images they saw.

``image_hashes`` gives one 64-bit hash per image (the first 8 bytes of the BLAKE2b digest of its
float32 bytes, shape included): equal images give equal hashes wherever they come from, so the
images a model was pruned or fine-tuned on can be compared, image by image, with the images it is
evaluated on. ``sequence_digest`` folds a run of hashes into 16 hex digits.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

TRAINING_HASHES = "pescore_training_hashes"  # model attribute: hashes (N,) of the images it was pruned/tuned on


def image_hashes(images: torch.Tensor) -> np.ndarray:
    """One 64-bit hash per image of ``images (N, C, H, W)``: ``(N,)`` uint64."""
    batch = images.detach().to("cpu", torch.float32).contiguous()
    shape = repr(tuple(batch.shape[1:])).encode()
    return np.array([int.from_bytes(hashlib.blake2b(image.numpy().tobytes() + shape, digest_size=8).digest(), "little")
                     for image in batch], dtype=np.uint64)


def sequence_digest(hashes: np.ndarray) -> str:
    """16 hex digits of the sha256 of ``hashes (N,)`` in order."""
    return hashlib.sha256(np.ascontiguousarray(hashes, dtype=np.uint64).tobytes()).hexdigest()[:16]
