"""Profiles, normalization (SPEC 4.4), average precision and mAP-ES activity (SPEC 4.5)."""
