"""Orchestration over the stage packages: the one-decode pass over kept tiles and the one downstream chain (profiles -> normalization -> activity -> MoA) every feature set goes through."""
