"""Just enough GraphQL execution for the Shopify and ShipHero simulators.

Operations are parsed with graphql-core (real syntax, variables, aliases, fragments); resolution is
done here over plain dicts, where a field's value may be a callable taking the field's arguments.
There is no schema: a field missing from the dict is reported as GraphQL does for an unknown field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLSyntaxError, Undefined, parse
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.utilities import value_from_ast_untyped


class GraphQLError(Exception):
    def __init__(self, message: str, extensions: dict[str, Any] | None = None, path: list | None = None):
        super().__init__(message)
        self.message, self.extensions, self.path = message, extensions or {}, path


@dataclass
class Operation:
    kind: str  # "query" | "mutation"
    selection_set: SelectionSetNode
    variables: dict[str, Any]
    fragments: dict[str, FragmentDefinitionNode] = field(default_factory=dict)

    def fields(self, selection_set: SelectionSetNode | None = None) -> list[FieldNode]:
        """The fields of a selection set with fragments flattened."""
        out: list[FieldNode] = []
        for sel in (selection_set or self.selection_set).selections:
            if isinstance(sel, FieldNode):
                out.append(sel)
            elif isinstance(sel, FragmentSpreadNode):
                out.extend(self.fields(self.fragments[sel.name.value].selection_set))
            elif isinstance(sel, InlineFragmentNode):
                out.extend(self.fields(sel.selection_set))
        return out

    def _values(self, arguments) -> dict[str, Any]:
        """Argument values; an argument bound to a variable the request did not send is omitted."""
        values = {a.name.value: value_from_ast_untyped(a.value, self.variables) for a in arguments}
        return {k: v for k, v in values.items() if v is not Undefined}

    def args(self, node: FieldNode) -> dict[str, Any]:
        return self._values(node.arguments)

    def directive_args(self, node: FieldNode, name: str) -> dict[str, Any] | None:
        for d in node.directives:
            if d.name.value == name:
                return self._values(d.arguments)
        return None


def parse_operation(body: dict[str, Any]) -> Operation:
    query = body.get("query")
    if not isinstance(query, str):
        raise GraphQLError("No query string was present")
    try:
        doc: DocumentNode = parse(query)
    except GraphQLSyntaxError as exc:
        raise GraphQLError(f"Parse error: {exc.message}") from None
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    name = body.get("operationName")
    if name:
        ops = [o for o in ops if o.name and o.name.value == name]
    if len(ops) != 1:
        raise GraphQLError(
            "Must provide operation name if query contains multiple operations"
            if not name
            else f"Unknown operation named '{name}'."
        )
    op = ops[0]
    variables = dict(body.get("variables") or {})
    for vd in op.variable_definitions:
        vname = vd.variable.name.value
        if vname not in variables and vd.default_value is not None:
            variables[vname] = value_from_ast_untyped(vd.default_value, {})
    return Operation(op.operation.value, op.selection_set, variables, fragments)


def project(op: Operation, value: Any, selection_set: SelectionSetNode | None, path: list) -> Any:
    """Shape `value` (dicts whose values may be callables of the field arguments) by a selection set."""
    if value is None or selection_set is None:
        return value
    if isinstance(value, list):
        return [project(op, v, selection_set, path + [i]) for i, v in enumerate(value)]
    out: dict[str, Any] = {}
    type_name = value.get("__typename", "Object")
    for node in op.fields(selection_set):
        name = node.name.value
        key = node.alias.value if node.alias else name
        if name not in value:
            raise GraphQLError(
                f"Field '{name}' doesn't exist on type '{type_name}'",
                {"code": "undefinedField", "typeName": type_name, "fieldName": name},
                path + [key],
            )
        v = value[name]
        if callable(v):
            v = v(op.args(node))
        out[key] = project(op, v, node.selection_set, path + [key])
    return out


def estimate_cost(op: Operation, selection_set: SelectionSetNode, connection_args=("first", "last")) -> int:
    """Requested cost in Shopify's model: objects 1, scalars 0, connections 2 + size × children."""
    total = 0
    for node in op.fields(selection_set):
        if node.selection_set is None:
            continue
        args = op.args(node)
        size = next((int(args[a]) for a in connection_args if isinstance(args.get(a), int)), None)
        children = estimate_cost(op, node.selection_set, connection_args)
        total += 2 + size * children if size is not None else 1 + children
    return total


def count_objects(data: Any) -> int:
    """Actual cost: one point per object returned."""
    if isinstance(data, dict):
        return 1 + sum(count_objects(v) for v in data.values())
    if isinstance(data, list):
        return sum(count_objects(v) for v in data)
    return 0
