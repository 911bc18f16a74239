"""Seeded pixel content: one smooth base image per series and cheap, distinct per-instance variants."""

from __future__ import annotations

import math

import numpy as np


class _PixelSource:
    """Seeded pixel content for one series: one base image, cheap per-instance variants.

    The base image is a smooth elliptical "body" plus low-amplitude noise (so it compresses a
    little, like real images); instance ``i`` is the base shifted by a few pixels with ``i``
    stamped into its first samples, so every instance's pixel bytes differ.
    """

    _MAX_SHIFT = 4096

    def __init__(self, rng: np.random.Generator, rows: int, columns: int, samples: int,
                 bits_allocated: int, bits_stored: int) -> None:
        self.samples = samples
        self.count = rows * columns * samples
        self.dtype = np.uint16 if bits_allocated > 8 else np.uint8
        self.max_value = (1 << bits_stored) - 1
        base = self._base_image(rng, rows, columns).reshape(-1)
        if samples > 1:
            tint = np.array([1.0, 0.96, 0.9], dtype=np.float32)[:samples]
            base = (base[:, None].astype(np.float32) * tint[None, :]).astype(self.dtype).reshape(-1)
        self.shifts = max(1, min(rows * columns, self._MAX_SHIFT))
        self.buffer = np.concatenate([base, base[: self.shifts * samples]])
        self.odd = (self.count * np.dtype(self.dtype).itemsize) % 2 == 1

    def _base_image(self, rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
        step = 8
        cr, cc = math.ceil(rows / step), math.ceil(columns / step)
        y = np.linspace(-1.0, 1.0, cr, dtype=np.float32)[:, None]
        x = np.linspace(-1.0, 1.0, cc, dtype=np.float32)[None, :]
        a, b = rng.uniform(0.55, 0.9), rng.uniform(0.6, 0.95)
        r2 = (x / a) ** 2 + (y / b) ** 2
        top = self.max_value
        img = np.where(r2 < 1.0, top * rng.uniform(0.25, 0.4) * (1.25 - 0.5 * r2), top * 0.01)
        for _ in range(3):  # a few "organs"
            ox, oy = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)
            rad = rng.uniform(0.08, 0.25)
            blob = ((x - ox) ** 2 + (y - oy) ** 2) < rad * rad
            img = np.where(blob, img + top * rng.uniform(0.05, 0.2), img)
        coarse = np.clip(img, 0, top).astype(np.float32)
        full = np.repeat(np.repeat(coarse, step, axis=0), step, axis=1)[:rows, :columns]
        noise_amp = max(2, (top + 1) // 64)
        noise = rng.integers(0, noise_amp, size=(rows, columns), dtype=np.uint16)
        out = np.minimum(full.astype(np.uint16) + noise, top)
        return out.astype(self.dtype)

    def instance(self, index: int) -> bytes:
        off = ((index * 7919) % self.shifts) * self.samples
        arr = self.buffer[off: off + self.count].copy()
        mask = self.max_value
        stamp = (index & mask, (index >> 8) & mask, (index >> 16) & mask)
        for i, v in enumerate(stamp[: min(3, self.count)]):
            arr[i] = v
        data = arr.tobytes()
        return data + b"\x00" if self.odd else data
