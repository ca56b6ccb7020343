"""SQL expressions for the searches of argilla-server, built on its own tables (SQLite only).

argilla-server hands its search engine filters (``TermsFilter``, ``RangeFilter``, ``AndFilter``) on four
scopes (the record itself, its metadata, its suggestions, its responses), sort orders on the same scopes and
a free-text query. Here each becomes a SQLAlchemy expression over the ``records`` table, with ``EXISTS``
subqueries for responses and suggestions, and SQLite's ``json_each`` / ``json_tree`` for the JSON columns
(metadata, field values, suggestion and response values), so a list of terms matches any element of a list
value as Elasticsearch does. ``argilla_server`` and ``sqlalchemy`` are imported inside the functions: this
module runs in argilla-server's virtual environment, and imports anywhere.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

RECORD_COLUMNS = {"id", "external_id", "inserted_at", "updated_at", "status"}
_PHRASE_OR_WORD = re.compile(r'"([^"]+)"|(\S+)')
_QUERY_SYNTAX = "+-|*()~"  # simple_query_string operators: kept out of the words matched


def json_path(name: str) -> str:
    """The SQLite JSON path of a top-level key, quoted so that any name works."""
    return '$."{}"'.format(name.replace('"', '\\"'))


def where_clauses(dataset_id: Any, query: Any = None, filter: Any = None) -> list[Any]:
    """The WHERE clauses selecting a dataset's records that match a text query and a filter."""
    from argilla_server.models import Record

    clauses = [Record.dataset_id == dataset_id]
    if query is not None:
        clauses.append(text_clause(query))
    if filter is not None:
        clauses.append(filter_clause(filter))
    return clauses


def text_clause(query: Any) -> Any:
    """Every word (or "quoted phrase") of the query in some text of the record's fields (or of one field)."""
    from argilla_server.models import Record
    from sqlalchemy import and_, exists, func, literal, select, true

    text, field = (query, None) if isinstance(query, str) else (query.q, query.field)
    path = json_path(field) if field else "$"
    clauses = []
    for phrase, word in _PHRASE_OR_WORD.findall(text):
        term = phrase or word.strip(_QUERY_SYNTAX)
        if not term:
            continue
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        tree = func.json_tree(Record.fields, path).table_valued("value", "type")
        match = and_(tree.c.type == "text", tree.c.value.like(pattern, escape="\\"))
        clauses.append(exists(select(literal(1)).select_from(tree).where(match)))
    return and_(true(), *clauses)


def filter_clause(filter: Any) -> Any:
    """One filter of argilla_server.search_engine as a SQL condition on a record."""
    from argilla_server.models import Record
    from argilla_server.search_engine import base
    from sqlalchemy import and_, true

    if isinstance(filter, base.AndFilter):
        return and_(true(), *(filter_clause(child) for child in filter.filters))
    scope = filter.scope
    if isinstance(scope, base.RecordFilterScope):
        return record_clause(scope.property, filter)
    if isinstance(scope, base.MetadataFilterScope):
        return json_match(Record.metadata_, json_path(scope.metadata_property), filter)
    if isinstance(scope, base.SuggestionFilterScope):
        return suggestion_clause(scope, filter)
    if isinstance(scope, base.ResponseFilterScope):
        return response_clause(scope, filter)
    raise ValueError(f"cannot filter on the scope {scope!r}")


def _bounds(filter: Any, convert: Any = float) -> tuple[Any, Any]:
    return tuple(None if value is None else convert(value) for value in (filter.ge, filter.le))


def _in_range(expression: Any, filter: Any, convert: Any = float) -> Any:
    from sqlalchemy import and_, true

    low, high = _bounds(filter, convert)
    bounds = [expression >= low] if low is not None else []
    return and_(true(), *bounds, *([expression <= high] if high is not None else []))


def json_match(column: Any, path: str, filter: Any) -> Any:
    """Some value at ``path`` of a JSON column (the value, or an element of a list) matches the filter."""
    from argilla_server.search_engine import base
    from sqlalchemy import String, cast, exists, func, literal, select

    each = func.json_each(column, path).table_valued("value")
    if isinstance(filter, base.TermsFilter):
        condition = cast(each.c.value, String).in_([str(value) for value in filter.values])
    else:
        condition = _in_range(each.c.value, filter)
    return exists(select(literal(1)).select_from(each).where(condition))


def to_datetime(value: Any) -> datetime:
    """An ISO 8601 string or epoch milliseconds (Elasticsearch's default) as a naive UTC datetime."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value)):
        return datetime.fromtimestamp(float(value) / 1000, tz=timezone.utc).replace(tzinfo=None)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _enum_values(enum: Any, values: list[str]) -> list[Any]:
    return [enum(value) for value in values if value in {member.value for member in enum}]


def record_clause(name: str, filter: Any) -> Any:
    """A filter on a column of the record: id, external_id, status, inserted_at or updated_at."""
    from uuid import UUID

    from argilla_server.enums import RecordStatus
    from argilla_server.models import Record
    from argilla_server.search_engine import base

    if name not in RECORD_COLUMNS:
        raise ValueError(f"cannot filter on the record property {name!r}")
    column = getattr(Record, name)
    if isinstance(filter, base.TermsFilter):
        if name == "id":
            return column.in_([UUID(value) for value in filter.values if _is_uuid(value)])
        if name == "status":
            return column.in_(_enum_values(RecordStatus, filter.values))
        return column.in_(filter.values)
    if name in ("inserted_at", "updated_at"):
        return _in_range(column, filter, to_datetime)
    return _in_range(column, filter, str)


def _is_uuid(value: str) -> bool:
    from uuid import UUID

    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


def suggestion_clause(scope: Any, filter: Any) -> Any:
    """The record has a suggestion for the question whose value, score, agent or type matches."""
    from argilla_server.enums import SuggestionType
    from argilla_server.models import Question, Record, Suggestion
    from argilla_server.search_engine import base
    from sqlalchemy import exists, select

    prop = scope.property or "value"
    if prop in ("value", "score"):
        condition = json_match(getattr(Suggestion, prop), "$", filter)
    elif isinstance(filter, base.TermsFilter):
        values = _enum_values(SuggestionType, filter.values) if prop == "type" else filter.values
        condition = getattr(Suggestion, prop).in_(values)
    else:
        raise ValueError(f"cannot filter suggestions by a range of {prop!r}")
    return exists(
        select(Suggestion.id)
        .join(Question, Question.id == Suggestion.question_id)
        .where(Suggestion.record_id == Record.id, Question.name == scope.question, condition)
    )


def response_clause(scope: Any, filter: Any) -> Any:
    """A filter on the record's responses (of the scope's user, if any): their status or a question's value.

    The status ``pending`` means "no response": none from that user, or none at all without a user.
    """
    from argilla_server.enums import ResponseStatus
    from argilla_server.models import Record, Response
    from argilla_server.search_engine import base
    from sqlalchemy import exists, false, or_, select, true

    mine = Response.user_id == scope.user.id if scope.user is not None else true()
    responses = select(Response.id).where(Response.record_id == Record.id, mine)
    if scope.question:
        value_path = json_path(scope.question) + ".value"
        return exists(responses.where(json_match(Response.values, value_path, filter)))
    if scope.property != "status" or not isinstance(filter, base.TermsFilter):
        raise ValueError(f"cannot filter responses on {scope.property!r} with {type(filter).__name__}")
    clauses = []
    if "pending" in filter.values:
        clauses.append(~exists(responses))
    if statuses := _enum_values(ResponseStatus, filter.values):
        clauses.append(exists(responses.where(Response.status.in_(statuses))))
    return or_(false(), *clauses)


def sort_key(order: Any) -> Any:
    """One sort order of argilla_server.search_engine as an ORDER BY expression (missing values last)."""
    from argilla_server.models import Question, Record, Response, Suggestion
    from argilla_server.search_engine import base
    from sqlalchemy import func, select

    scope = order.scope
    if isinstance(scope, base.RecordFilterScope):
        key = getattr(Record, scope.property)
    elif isinstance(scope, base.MetadataFilterScope):
        key = func.json_extract(Record.metadata_, json_path(scope.metadata_property))
    elif isinstance(scope, base.SuggestionFilterScope):
        prop = scope.property or "value"
        column = getattr(Suggestion, prop)
        value = func.json_extract(column, "$") if prop in ("value", "score") else column
        key = (
            select(value)
            .join(Question, Question.id == Suggestion.question_id)
            .where(Suggestion.record_id == Record.id, Question.name == scope.question)
            .limit(1)
            .scalar_subquery()
        )
    elif isinstance(scope, base.ResponseFilterScope):
        path = json_path(scope.question) + ".value" if scope.question else None
        value = func.avg(func.json_extract(Response.values, path)) if path else func.min(Response.status)
        mine = [Response.user_id == scope.user.id] if scope.user is not None else []
        key = select(value).where(Response.record_id == Record.id, *mine).scalar_subquery()
    else:
        raise ValueError(f"cannot sort on the scope {scope!r}")
    return (key.desc() if order.order == "desc" else key.asc()).nulls_last()
