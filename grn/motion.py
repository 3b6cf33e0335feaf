"""The motions of the embedded Moving-MNIST videos, declared once: grn/video_data.py draws and renders them,
grn/video_captions.py words and parses them, grn_eval/video_recovery.py recovers them from pixels."""

from __future__ import annotations

import numpy as np

# Compass directions counter-clockwise from "right", 45 degrees apart: direction k points at
# angle k * 45 degrees, with "up" = towards row 0. Each step is (column step, row step) per frame
# in units of the speed, so rows grow downward as in the pixel array.
DIRECTION_NAMES = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")
DIRECTION_STEPS = np.array([(1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)], np.float64)
# Pixels per frame along *each moving axis* (not per unit vector): a diagonal digit moves this
# far in both x and y each frame. Slow enough that at the defaults (17 frames, 24 px digit in 32 px)
# the quick path (8 px) just fits the 8 px free range: no clip bounces and the digit stays in one
# small neighbourhood, which a 2-core training budget needs to learn the digit from the caption
# (with 1 and 0.5 px/frame over a 16 px range the text-to-video model got the digit right in 0.21
# of its videos; with these speeds over 8 px, 0.59; chance 0.10).
SPEEDS = (0.25, 0.5)
SPEED_NAMES = ("slow", "quick")
