"""The glyph alphabet. Its order fixes class ids everywhere: renderer, datasets, models, export."""

CHARSET = "0123456789abcdefghijklmnopqrstuvwxyz"
CHAR_TO_ID = {ch: i for i, ch in enumerate(CHARSET)}
