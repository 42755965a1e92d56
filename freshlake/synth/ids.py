"""Unique, random-looking ids (16 hex characters) from integer indices, vectorised."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Id spaces: the top byte of the index, so ids of different kinds never collide.
IMPRESSION, REQUEST, ACTION, MALFORMED_IMPRESSION = 0, 1, 2, 3

_HEX_PAIRS = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2").view(np.uint16)


def mix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijection on uint64, so distinct inputs give distinct ids."""
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)  # so index 0 does not map to 0
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def index_in_space(space: int, chunk: int, local: np.ndarray) -> np.ndarray:
    """A 64-bit index unique per (id space, chunk, local row): 8 | 24 | 32 bits."""
    if chunk >= 1 << 24 or (len(local) and int(local.max()) >= 1 << 32):
        raise ValueError("chunk or row index out of range for an id")
    return (
        (np.uint64(space) << np.uint64(56))
        | (np.uint64(chunk) << np.uint64(32))
        | local.astype(np.uint64)
    )


def hex_ids(indices: np.ndarray) -> pa.StringArray:
    """16-character lowercase hex ids, one per index (a bijection of the index)."""
    big_endian = mix64(indices).astype(">u8").view(np.uint8).reshape(-1, 8)
    chars = np.ascontiguousarray(_HEX_PAIRS[big_endian])
    fixed = pa.Array.from_buffers(pa.binary(16), len(indices), [None, pa.py_buffer(chars)])
    return fixed.cast(pa.binary()).cast(pa.string())
