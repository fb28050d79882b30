"""The layering: lcd_core never imports Dagster or lcd_assets, and no lcd_assets domain folder
imports another one (they share only resources, partitions, metadata, definitions, demo, cli)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOMAINS = sorted(p.parent.name for p in (REPO / "lcd_assets").glob("*/__init__.py"))


def imported_modules(source: str) -> list[str]:
    """Every module an import statement of ``source`` names, function-local ones included;
    ``from pkg import name`` gives ``pkg`` and ``pkg.name`` (the name may be a module)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def foreign_domains(source: str, own: str) -> set[str]:
    """The lcd_assets domain folders other than ``own`` that ``source`` imports."""
    parts = (m.split(".") for m in imported_modules(source))
    return {p[1] for p in parts if len(p) > 1 and p[0] == "lcd_assets" and p[1] in DOMAINS and p[1] != own}


def test_the_checks_see_every_kind_of_import():
    source = "import os\ndef f():\n    from lcd_assets.moa.assets import x\n    import dagster as dg\n"
    assert {"dagster", "lcd_assets.moa.assets"} <= set(imported_modules(source))
    assert foreign_domains(source, own="handcrafted") == {"moa"}
    assert foreign_domains("from lcd_assets import moa\n", own="profiling") == {"moa"}
    assert foreign_domains("from lcd_assets import metadata as md\n", own="profiling") == set()
    assert foreign_domains("from lcd_assets.moa import assets\n", own="moa") == set()


def test_lcd_core_never_imports_dagster_or_lcd_assets():
    files = sorted((REPO / "lcd_core").rglob("*.py"))
    assert len(files) > 20
    for path in files:
        roots = {m.split(".")[0] for m in imported_modules(path.read_text())}
        assert not roots & {"dagster", "lcd_assets"}, f"{path.relative_to(REPO)} imports {roots & {'dagster', 'lcd_assets'}}"


def test_no_lcd_assets_domain_imports_another():
    assert {"acquisition", "handcrafted", "models", "moa", "pretraining", "profiling", "registry"} <= set(DOMAINS)
    for domain in DOMAINS:
        for path in sorted((REPO / "lcd_assets" / domain).rglob("*.py")):
            foreign = foreign_domains(path.read_text(), own=domain)
            assert not foreign, f"{path.relative_to(REPO)} imports the domain(s) {sorted(foreign)}"
