"""One database and one path: the pool and the ledger each have one writer, the middleware calls
the pool and imports no view, and no second database lingers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = [p for d in ("marketplace", "workers") for p in (ROOT / d).rglob("*.py") if "migrations" not in p.parts]
POOL_TABLES = r"(slot|assignment|assignmentitem|answer)"
POOL_MODELS = r"(Slot|Assignment|AssignmentItem|Answer)"
LEDGER_TABLES = r"(ledgertxn|ledgerentry|ledgerbalance)"
LEDGER_MODELS = r"(LedgerTxn|LedgerEntry|LedgerBalance)"


def _writers(sql_tables: str, models: str) -> set[str]:
    """Files that write the given tables, in SQL or through SQLAlchemy."""
    sql = re.compile(rf"(INSERT INTO|UPDATE|DELETE FROM)\s+{sql_tables}\b", re.IGNORECASE)
    calls = rf"\b(insert|update|delete)\(\s*{models}\b"  # insert(Slot), update(Answer), ...
    tables = rf"\b{models}\.__table__\.(insert|update|delete)\("
    rows = rf"(?<!class )\b{models}\("  # a new row object
    orm = re.compile(f"{calls}|{tables}|{rows}")
    return {str(p.relative_to(ROOT)) for p in CODE if sql.search(p.read_text()) or orm.search(p.read_text())}


def test_no_second_database_lingers() -> None:
    found = [str(p.relative_to(ROOT)) for p in CODE if re.search(r"sqlite|dialect", p.read_text(), re.IGNORECASE)]
    assert found == []


def test_only_the_pool_writes_slots_assignments_and_answers() -> None:
    writers = _writers(POOL_TABLES, POOL_MODELS)
    assert writers and all(w.startswith("marketplace/pool/") for w in writers), writers


def test_only_the_ledger_writes_money() -> None:
    assert _writers(LEDGER_TABLES, LEDGER_MODELS) == {"marketplace/services/ledger.py"}


def test_the_middleware_calls_the_pool_and_imports_no_view() -> None:
    tree = ast.parse((ROOT / "marketplace/api/hot.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    views = {"assignments", "jobs", "accounts", "money", "operators", "rules"}
    assert not {i for i in imported if any(i.startswith(f"marketplace.api.{v}") for v in views)}, imported
    assert {"marketplace.pool.lease", "marketplace.pool.submit"} <= imported
