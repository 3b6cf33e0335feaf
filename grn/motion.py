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
# far in both x and y each frame, so the quick speed keeps whole-pixel positions in every direction.
SPEEDS = (0.5, 1.0)
SPEED_NAMES = ("slow", "quick")
