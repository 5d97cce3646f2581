"""The second stage: a small CNN that reads each glyph the detector found from a crop around it."""
