"""Time-lapse assets: phenotype trajectories and MolCLIP (SPEC §4.11, §4.12)."""
