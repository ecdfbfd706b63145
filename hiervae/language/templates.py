"""Template expansion: ``for`` loops, ``(expr)`` substitution and ``a1..a10`` ranges.

Deep hierarchies are written once::

    - for: l in 1..L
      nodes:
        eps(l): {latent: 10, given: [z(l-1)]}

A name followed by ``(...)`` holds an integer expression over loop variables and
``vars`` (``+ - * // %``, nested parentheses, integer literals): ``eps(l)`` at
``l = 3`` is ``eps3``.  Parentheses, unlike braces, are legal inside YAML flow
collections, so ``given: [x, z(l-1)]`` needs no quoting.  A reference list item
``z1..z(L)`` expands to the range ``z1, z2, ..., zL`` (empty when the end is below
the start).

The boundary rule: inside a loop, a *templated* reference whose node is declared
nowhere and whose index falls outside the loop's range is dropped (``z(l-1)`` at
``l = 1`` names ``z0``): that is how the first layer of a hierarchy gets learned
constants instead of a conditioning input.  Any other unknown name stays and is
reported as a dangling reference, so typos are not silently ignored.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from typing import Mapping

_INDEXED = re.compile(r"^(.*?)(\d+)$")
_RANGE = re.compile(r"^(?P<a>[^.\s]+)\.\.(?P<b>[^.\s]+)$")
_LOOP = re.compile(r"^\s*(?P<var>[A-Za-z_]\w*)\s+in\s+(?P<start>.+?)\.\.(?P<end>.+?)\s*$")

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


MAX_EXPRESSION = 200  # characters of one template expression
MAX_VALUE = 10**9  # magnitude of every integer a template computes
MAX_RANGE = 10_000  # iterations of one loop, names of one range


class TemplateError(ValueError):
    """Raised with a message; the caller attaches the location."""


def _bounded(value: int, expr: str) -> int:
    if abs(value) > MAX_VALUE:
        raise TemplateError(f"({expr[:40]}) computes {str(value)[:20]}{'...' if len(str(value)) > 20 else ''}, "
                            f"beyond +-{MAX_VALUE}")
    return value


def evaluate(expr: str, env: Mapping[str, int]) -> int:
    """Evaluate an integer template expression such as ``l-1`` or ``2*L`` (bounded: at most
    :data:`MAX_EXPRESSION` characters, every value within +-:data:`MAX_VALUE`)."""
    if len(expr) > MAX_EXPRESSION:
        raise TemplateError(f"an expression of {len(expr)} characters (at most {MAX_EXPRESSION})")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        raise TemplateError(f"cannot parse expression ({expr[:40]})") from None

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return _bounded(node.value, expr)
        if isinstance(node, ast.Name):
            if node.id not in env:
                known = ", ".join(sorted(env)) or "none"
                raise TemplateError(f"unknown name {node.id!r} in ({expr}) (known: {known})")
            return _bounded(env[node.id], expr)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            try:
                return _bounded(_OPS[type(node.op)](walk(node.left), walk(node.right)), expr)
            except ZeroDivisionError:
                raise TemplateError(f"division by zero in ({expr})") from None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise TemplateError(f"only integer arithmetic (+ - * // %) is allowed in ({expr})")

    try:
        return walk(tree)
    except RecursionError:
        raise TemplateError(f"expression nested too deeply ({expr[:40]})") from None


def _groups(text: str) -> list[tuple[int, int]]:
    """Spans ``(start, end)`` of the outermost balanced parenthesised groups."""
    spans, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise TemplateError(f"unbalanced ')' in {text!r}")
            if depth == 0:
                spans.append((start, i + 1))
    if depth:
        raise TemplateError(f"unbalanced '(' in {text!r}")
    return spans


def substitute(text: str, env: Mapping[str, int]) -> str:
    """Replace every ``(expr)`` in ``text`` by its integer value."""
    out, last = [], 0
    for start, end in _groups(text):
        out += [text[last:start], str(evaluate(text[start + 1 : end - 1], env))]
        last = end
    return "".join(out) + text[last:]


def parse_loop(header: str, env: Mapping[str, int]) -> tuple[str, range]:
    """``"l in 1..L"`` -> ``("l", range(1, L + 1))``."""
    match = _LOOP.match(header)
    if not match:
        raise TemplateError(f"expected `VAR in START..END`, got {header!r}")
    var = match["var"]
    if var in env:
        raise TemplateError(f"loop variable {var!r} shadows a name already defined")
    start = evaluate(match["start"], env)
    end = evaluate(match["end"], env)
    if end - start + 1 > MAX_RANGE:
        raise TemplateError(f"a loop of {end - start + 1} iterations (at most {MAX_RANGE})")
    return var, range(start, end + 1)


@dataclass(frozen=True)
class Reference:
    """A reference after substitution; ``soft`` ones may be dropped by the boundary rule."""

    name: str
    soft: bool = False


_SIGNED = re.compile(r"^(.*?[^-\d])(-?\d+)$")


def index_of(name: str) -> int | None:
    """The integer a templated name ends with, negative ones included (``z(l-2)`` at
    ``l = 1`` is ``z-1``: index -1, below any loop range, so the boundary rule drops it)."""
    match = _SIGNED.match(name)
    return int(match.group(2)) if match else None


def expand_references(items: list[str], env: Mapping[str, int], loop: range | None) -> list[Reference]:
    """Substitute and expand ranges in a list of references (``given``)."""
    out: list[Reference] = []
    for raw in items:
        text = substitute(raw, env)
        templated = bool(_groups(raw))
        match = _RANGE.match(text)
        if match:
            out.extend(Reference(n) for n in expand_range(match["a"], match["b"]))
            continue
        soft = False
        if templated and loop is not None:
            index = index_of(text)
            soft = index is not None and index not in loop
        out.append(Reference(text, soft))
    return out


def expand_range(first: str, last: str) -> list[str]:
    """``("z1", "z10")`` -> ``["z1", ..., "z10"]``; the prefixes must agree."""
    a, b = _INDEXED.match(first), _INDEXED.match(last)
    if not a or not b or a.group(1) != b.group(1):
        raise TemplateError(f"range {first}..{last} must be PREFIX<int>..PREFIX<int> with the same prefix")
    lo, hi = _bounded(int(a.group(2)), first), _bounded(int(b.group(2)), last)
    if hi - lo + 1 > MAX_RANGE:
        raise TemplateError(f"a range of {hi - lo + 1} names (at most {MAX_RANGE})")
    return [f"{a.group(1)}{i}" for i in range(lo, hi + 1)]


