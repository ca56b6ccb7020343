"""A search engine for argilla-server that answers from its own SQL database (no Elasticsearch).

argilla-server keeps every record, response and suggestion in its database and mirrors them into a search
index (Elasticsearch or OpenSearch) that serves the listing, filtering, sorting and counting of records. Here
the database itself is the index: the methods that keep an index up to date do nothing, and searches,
progress counts and metadata metrics are SQL queries on argilla's tables (expressions in
:mod:`skillmix.argilla_local.sqlquery`). It needs argilla-server's SQLite database (``ARGILLA_DATABASE_URL``).

The engine is registered through argilla-server's ``SearchEngine.register`` hook by :func:`register`, which
the processes of :mod:`skillmix.argilla_local.argilla_process` call before the app starts; the server selects
it with ``ARGILLA_SEARCH_ENGINE=skillmix-sql``. Records found without a sort order come in insertion order,
or, for a user's own queue, in an order shuffled by the user id (different per annotator, stable per user), as
argilla-server's Elasticsearch engine does. Similarity search compares the stored vectors with cosine
similarity in Python.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from skillmix.argilla_local import sqlquery

ENGINE_NAME = "skillmix-sql"


def register() -> type:
    """Build the engine class on argilla-server's ``SearchEngine`` and register it as ``skillmix-sql``."""
    from argilla_server.search_engine.base import SearchEngine

    if ENGINE_NAME not in SearchEngine.registered_classes:
        engine = type("SQLSearchEngine", (SQLSearchMixin, SearchEngine), {"__module__": __name__})
        SearchEngine.register(ENGINE_NAME)(engine)
    return SearchEngine.registered_classes[ENGINE_NAME]


def _session() -> Any:
    from argilla_server.database import AsyncSessionLocal

    return AsyncSessionLocal()


def user_order(user_id: Any, record_id: Any) -> str:
    """The sort key of a record in one user's shuffled queue."""
    return hashlib.sha256(f"{user_id}:{record_id}".encode()).hexdigest()


def cosine(a: list[float], b: list[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=False)) / norm if norm else 0.0


class SQLSearchMixin:
    """Every method of argilla-server's ``SearchEngine``, answered from argilla's own tables."""

    @classmethod
    async def new_instance(cls) -> SQLSearchMixin:
        from argilla_server.settings import settings

        if not settings.database_is_sqlite:
            raise ValueError(f"the {ENGINE_NAME} search engine needs argilla-server's SQLite database")
        return cls()

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        from sqlalchemy import text

        async with _session() as db:
            return (await db.execute(text("SELECT 1"))).scalar() == 1

    async def info(self) -> dict:
        return {"name": ENGINE_NAME, "backend": "sqlite", "version": "1"}

    # The database is the index: nothing to create, mirror or delete.
    async def create_index(self, dataset: Any) -> None:
        return None

    async def delete_index(self, dataset: Any) -> None:
        return None

    async def configure_metadata_property(self, dataset: Any, metadata_property: Any) -> None:
        return None

    async def configure_index_vectors(self, vector_settings: Any) -> None:
        return None

    async def index_records(self, dataset: Any, records: Any) -> None:
        return None

    async def partial_record_update(self, record: Any, **update: Any) -> None:
        return None

    async def delete_records(self, dataset: Any, records: Any) -> None:
        return None

    async def update_record_response(self, response: Any) -> None:
        return None

    async def delete_record_response(self, response: Any) -> None:
        return None

    async def update_record_suggestion(self, suggestion: Any) -> None:
        return None

    async def delete_record_suggestion(self, suggestion: Any) -> None:
        return None

    async def get_dataset_progress(self, dataset: Any) -> dict:
        """Records of a published dataset by status: ``{"total": n, "pending": p, "completed": c}``."""
        from argilla_server.models import Record
        from sqlalchemy import func, select

        if dataset.is_draft:
            return {}
        query = select(Record.status, func.count()).where(Record.dataset_id == dataset.id)
        query = query.group_by(Record.status)
        async with _session() as db:
            counts = {str(status.value): count for status, count in (await db.execute(query)).all()}
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Any, user: Any) -> dict:
        """One user's responses in a published dataset by status (submitted, discarded, draft)."""
        from argilla_server.models import Record, Response
        from sqlalchemy import func, select

        if dataset.is_draft:
            return {}
        query = (
            select(Response.status, func.count())
            .join(Record, Record.id == Response.record_id)
            .where(Record.dataset_id == dataset.id, Response.user_id == user.id)
            .group_by(Response.status)
        )
        async with _session() as db:
            counts = {str(status.value): count for status, count in (await db.execute(query)).all()}
        return {"total": sum(counts.values()), **counts}

    async def search(
        self,
        dataset: Any,
        query: Any = None,
        filter: Any = None,
        sort: Any = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Any = None,
    ) -> Any:
        """A page of the dataset's records matching the query and the filter, and how many match in all."""
        from argilla_server.models import Record
        from argilla_server.search_engine.base import SearchResponseItem, SearchResponses
        from sqlalchemy import func, select

        where = sqlquery.where_clauses(dataset.id, query, filter)
        async with _session() as db:
            total = (await db.execute(select(func.count()).select_from(Record).where(*where))).scalar_one()
            ids = select(Record.id).where(*where)
            if sort or user_id is None:
                keys = [sqlquery.sort_key(order) for order in sort or ()]
                ordered = ids.order_by(*keys, Record.inserted_at, Record.id).offset(offset).limit(limit)
                page = list((await db.execute(ordered)).scalars())
            else:
                found = list((await db.execute(ids)).scalars())
                found.sort(key=lambda record_id: user_order(user_id, record_id))
                page = found[offset : offset + limit]
        items = [SearchResponseItem(record_id=record_id, score=1.0) for record_id in page]
        return SearchResponses(items=items, total=total)

    async def compute_metrics_for(self, metadata_property: Any) -> Any:
        """Counts per value of a terms property, or the minimum and maximum of a numeric one."""
        from argilla_server.enums import MetadataPropertyType
        from argilla_server.models import Record
        from argilla_server.search_engine import base
        from sqlalchemy import func, select, true

        path = sqlquery.json_path(metadata_property.name)
        in_dataset = Record.dataset_id == metadata_property.dataset_id
        async with _session() as db:
            if metadata_property.type == MetadataPropertyType.terms:
                each = func.json_each(Record.metadata_, path).table_valued("value")
                count = func.count()
                query = select(each.c.value, count).select_from(Record).join(each, true()).where(in_dataset)
                rows = (await db.execute(query.group_by(each.c.value).order_by(count.desc()))).all()
                values = [base.TermsMetrics.TermCount(term=str(term), count=n) for term, n in rows]
                return base.TermsMetrics(total=sum(n for _, n in rows), values=values)
            value = func.json_extract(Record.metadata_, path)
            low, high = (await db.execute(select(func.min(value), func.max(value)).where(in_dataset))).one()
        if metadata_property.type == MetadataPropertyType.integer:
            return base.IntegerMetadataMetrics(min=low, max=high)
        return base.FloatMetadataMetrics(min=low, max=high)

    async def similarity_search(
        self,
        dataset: Any,
        vector_settings: Any,
        value: Any = None,
        record: Any = None,
        query: Any = None,
        filter: Any = None,
        max_results: int = 100,
        order: Any = "most_similar",
        threshold: float | None = None,
    ) -> Any:
        """The records whose vectors are nearest (cosine) to a value or to another record's vector."""
        from argilla_server.models import Record, Vector
        from argilla_server.search_engine.base import SearchResponseItem, SearchResponses
        from sqlalchemy import select

        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        target = value or record.vector_value_by_vector_settings(vector_settings)
        if not target:
            raise ValueError("Cannot find a vector value to apply with provided info")
        sign = -1.0 if order == "least_similar" else 1.0
        where = sqlquery.where_clauses(dataset.id, query, filter)
        query_rows = (
            select(Record.id, Vector.value)
            .join(Vector, Vector.record_id == Record.id)
            .where(Vector.vector_settings_id == vector_settings.id, *where)
        )
        if record is not None:
            query_rows = query_rows.where(Record.id != record.id)
        async with _session() as db:
            rows = (await db.execute(query_rows)).all()
        scored = sorted(((sign * cosine(target, vec), rid) for rid, vec in rows), key=lambda pair: -pair[0])
        kept = [
            (score, rid) for score, rid in scored[:max_results] if threshold is None or score >= threshold
        ]
        items = [SearchResponseItem(record_id=rid, score=score) for score, rid in kept]
        return SearchResponses(items=items, total=len(items))
