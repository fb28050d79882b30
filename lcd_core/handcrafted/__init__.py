"""The handcrafted (CellProfiler-style) baseline of SPEC 4.7: tile features with scipy / scikit-image."""
