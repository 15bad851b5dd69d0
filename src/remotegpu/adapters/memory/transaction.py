"""A write set over an InMemoryStore: what one unit of work changed but has not committed.

Reads see committed state plus this transaction's own changes; commit re-checks
the constraints against whatever other units of work committed meanwhile, then
applies the changes atomically (no ``await`` in between). Rows handed out are
copies, so mutating one without ``update()`` changes nothing.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

from remotegpu.adapters.memory.store import SPECS, InMemoryStore, Key, conflict, stored_copy

_DELETED = object()


class Transaction:
    def __init__(self, store: InMemoryStore):
        self._store = store
        self._pending: dict[str, dict[Key, Any]] = {name: {} for name in SPECS}
        self._inserted: set[tuple[str, Key]] = set()

    # --- reads --------------------------------------------------------------------------
    def get(self, table: str, key: Key) -> Any | None:
        row = self._raw(table, key)
        return None if row is None else copy.deepcopy(row)

    def rows(self, table: str) -> Iterator[tuple[Key, Any]]:
        """Every visible row of ``table`` (uncopied: callers copy what they return)."""
        return iter(self._merged(table).items())

    def change_epoch(self) -> int:
        return self._store.change_epoch

    # --- writes -------------------------------------------------------------------------
    def insert(self, table: str, key: Key, row: Any) -> None:
        if self._raw(table, key) is not None:
            raise conflict(f"pk_{table}")
        row = stored_copy(row)
        self._check(table, key, row, self._merged)
        # Re-inserting a key this transaction deleted replaces the row (as DELETE then
        # INSERT does in SQL): it is not a new key that may collide at commit.
        replaces = self._pending[table].get(key) is _DELETED
        self._pending[table][key] = row
        if not replaces:
            self._inserted.add((table, key))

    def update(self, table: str, key: Key, row: Any) -> None:
        """Like SQL UPDATE ... WHERE pk: silently nothing when the row does not exist."""
        if self._raw(table, key) is None:
            return
        row = stored_copy(row)
        self._check(table, key, row, self._merged)
        self._pending[table][key] = row

    def delete(self, table: str, key: Key) -> int:
        """Delete one row and, as ON DELETE CASCADE does, the rows referencing it."""
        if self._raw(table, key) is None:
            return 0
        self._pending[table][key] = _DELETED
        for child, spec in SPECS.items():
            for parent, parent_key in spec.references.values():
                if parent == table:
                    for child_key, child_row in list(self.rows(child)):
                        if parent_key(child_row) == key:
                            self.delete(child, child_key)
        return 1

    # --- transaction ----------------------------------------------------------------------
    def commit(self) -> None:
        committed = self._store.tables

        def after_commit(table: str) -> dict[Key, Any]:
            return self._merged(table)

        for table, changes in self._pending.items():
            for key, row in changes.items():
                if row is _DELETED:
                    continue
                if (table, key) in self._inserted and key in committed[table]:
                    raise conflict(f"pk_{table}")
                self._check(table, key, row, after_commit)
        wrote = False
        for table, changes in self._pending.items():
            for key, row in changes.items():
                wrote = True
                if row is _DELETED:
                    committed[table].pop(key, None)
                else:
                    committed[table][key] = row
        if wrote:
            self._store.change_epoch += 1
        self.discard()

    def discard(self) -> None:
        self._pending = {name: {} for name in SPECS}
        self._inserted.clear()

    # --- internals ------------------------------------------------------------------------
    def _raw(self, table: str, key: Key) -> Any | None:
        pending = self._pending[table].get(key)
        if pending is _DELETED:
            return None
        return pending if pending is not None else self._store.tables[table].get(key)

    def _merged(self, table: str) -> dict[Key, Any]:
        merged = dict(self._store.tables[table])
        for key, row in self._pending[table].items():
            if row is _DELETED:
                merged.pop(key, None)
            else:
                merged[key] = row
        return merged

    def _check(self, table: str, key: Key, row: Any, view) -> None:
        spec = SPECS[table]
        if spec.unique:
            others = [r for k, r in view(table).items() if k != key]
            for name, unique_key in spec.unique.items():
                value = unique_key(row)
                if value is None:  # as in SQL, NULL never collides
                    continue
                if any(unique_key(other) == value for other in others):
                    raise conflict(name)
        for name, (parent, parent_key) in spec.references.items():
            if parent_key(row) not in view(parent):
                raise conflict(name)
