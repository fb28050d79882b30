"""Inputs and storage: the Opera Phenix index reader, plate maps and run registry, the inbox, the DuckDB warehouse."""
