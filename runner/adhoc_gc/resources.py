"""Where the SQL templates and migrations are: inside the installed wheel, or the checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _find(name: str) -> Path:
    packaged = resources.files("adhoc_gc") / name
    if packaged.is_dir():
        return Path(str(packaged))
    # Running from a checkout (editable install): runner/adhoc_gc/ -> repository root.
    in_checkout = Path(__file__).resolve().parents[2] / name
    if in_checkout.is_dir():
        return in_checkout
    raise FileNotFoundError(f"adhoc-gc is installed without its {name}/ folder")


def sql_dir() -> Path:
    return _find("sql")


def migrations_dir() -> Path:
    return _find("migrations")
