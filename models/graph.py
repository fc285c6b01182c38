"""Graph algorithms the specs share (workstream steps, curriculum prerequisites)."""

from __future__ import annotations


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle of ``graph`` (node -> nodes it depends on), as the node
    path with the first node repeated at the end; None when the graph is acyclic.

    Depth-first search with white/grey/black colouring (Cormen et al., *Introduction
    to Algorithms*, 22.3): a grey node reached again closes a cycle.
    """
    colour: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if colour.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        colour[node] = 2
        path.pop()
        return None

    for node in graph:
        if colour.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None
