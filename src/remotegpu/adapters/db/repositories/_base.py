"""What every SQL repository shares: one session, integrity errors as Conflict."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable, Select

from remotegpu.domain.shared.errors import Conflict


def conflict_from(exc: IntegrityError) -> Conflict:
    """The database refused a duplicate or a dangling reference.

    Use cases check for duplicates first to give precise codes; this is the
    backstop for races. After it, the transaction is unusable on PostgreSQL: leave
    the unit of work (it rolls back).
    """
    return Conflict("the change conflicts with existing data", code="conflict", details={"reason": str(exc.orig)[:200]})


class SqlRepository:
    def __init__(self, session: AsyncSession):
        self._session = session

    async def _execute(self, statement: Executable) -> Any:
        try:
            return await self._session.execute(statement)
        except IntegrityError as exc:
            raise conflict_from(exc) from exc
        except StatementError as exc:
            # A bind value was refused in Python (e.g. a naive datetime): raise that
            # error itself, as the in-memory adapter does, not SQLAlchemy's wrapper.
            if isinstance(exc.orig, ValueError):
                raise exc.orig from None
            raise

    async def _page(self, query: Select, *, limit: int, offset: int) -> tuple[list[Any], int]:
        """Rows of one page of ``query`` (already ordered) and the total without paging."""
        total = (await self._session.execute(select(func.count()).select_from(query.order_by(None).subquery()))).scalar_one()
        rows = (await self._session.execute(query.limit(limit).offset(offset))).all()
        return rows, total

    async def _page_with_total(self, query: Select, *, limit: int, offset: int) -> tuple[list[Any], int]:
        """Like ``_page`` in one query where it can: the total rides on every row as a
        window count (column ``_total``); only a page past the end needs a second query."""
        rows = (await self._session.execute(query.add_columns(func.count().over().label("_total")).limit(limit).offset(offset))).all()
        if rows:
            return rows, rows[0]._mapping["_total"]
        if offset == 0:
            return rows, 0
        total = (await self._session.execute(select(func.count()).select_from(query.order_by(None).subquery()))).scalar_one()
        return rows, total
