"""Colours of the simulated world, shared by the simulator, the segmenter and the text rules
(a module of its own so that none of them has to import the others)."""

#: Named object colours (RGB in [0, 1]); names feed the text descriptions and segment labels.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.14, 0.12),
    "green": (0.16, 0.68, 0.22),
    "blue": (0.14, 0.30, 0.92),
    "yellow": (0.96, 0.84, 0.10),
    "orange": (1.00, 0.50, 0.05),
    "purple": (0.56, 0.20, 0.78),
    "cyan": (0.10, 0.80, 0.86),
    "pink": (0.98, 0.45, 0.72),
}
TABLE_RGB = (0.80, 0.77, 0.71)
PUSHER_RGB = (0.22, 0.22, 0.24)
