"""Registering our search attributes (``workflows.search_attributes``) on a server."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

from workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

_SA_TYPE_NAMES = {"KEYWORD": "Keyword", "TEXT": "Text", "INT": "Int", "DOUBLE": "Double",
                  "BOOL": "Bool", "DATETIME": "Datetime", "KEYWORD_LIST": "KeywordList"}


def search_attribute_flags(keys: list[SearchAttributeKey] = ALL_SEARCH_ATTRIBUTES) -> list[str]:
    """``--search-attribute NAME=Type`` flags of ``temporal server start-dev``
    registering our search attributes."""
    flags: list[str] = []
    for key in keys:
        flags += ["--search-attribute", f"{key.name}={_SA_TYPE_NAMES[key.indexed_value_type.name]}"]
    return flags


async def ensure_search_attributes(client: Client) -> bool:
    """Register our search attributes on a server that lacks them (a user's own).

    Returns:
        True when they are registered; False when the server refuses (e.g. Temporal
        Cloud without operator permission), in which case workflows run without them.
    """
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace))
        missing = {k.name: IndexedValueType.ValueType(int(k.indexed_value_type))
                   for k in ALL_SEARCH_ATTRIBUTES if k.name not in existing.custom_attributes}
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace,
                                           search_attributes=missing))
    except RPCError:
        return False
    return True
