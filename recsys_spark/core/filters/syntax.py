"""The managed service's filter expression language: tokens, AST, parser and printer.

Grammar (keywords and dataset names case-insensitive; AND binds tighter than OR)::

    filter     := expression ("|" expression)*
    expression := ("INCLUDE" | "EXCLUDE") ("ItemID" | "UserID") "WHERE" condition (("AND" | "OR") condition)*
                  ["IF" user_cond ("AND" user_cond)*]
    condition  := field ("IN" | "NOT" "IN") list_value
                | field ("=" | "<" | "<=" | ">" | ">=") scalar
    user_cond  := "CurrentUser." NAME (("IN" | "NOT" "IN") list_value | ("=" | "<" | ...) scalar)
    field      := ("Items" | "Users" | "Interactions") "." NAME
    list_value := "(" (STRING | NUMBER) ("," (STRING | NUMBER))* ")" | "(" PARAM ")" | "CurrentItem." NAME
    scalar     := NUMBER | PARAM | "(" PARAM ")" | "CurrentItem." NAME
    PARAM      := "$" [A-Za-z0-9_]+          STRING := '"' (escaped chars) '"'

Field names are kept as written: :func:`~recsys_spark.core.filters.rules.check_filter` matches them to the
schemas without regard to case and returns the schemas' spelling. The service's limits on the text: at most
2,500 characters, and a parameter name is a ``filterValues`` key, so at most 50 characters.

Hand-written recursive descent: the grammar is small, and every error can name its exact position and the
expected token in the service's own terms, with no dependency.

>>> f = parse_filter('include ItemID where Items.GENRE in ($GENRE) | EXCLUDE ItemID WHERE '
...                  'Interactions.EVENT_TYPE IN ("watch")')
>>> str(f)
'INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watch")'
>>> sorted(f.parameters)
['GENRE']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from recsys_spark.errors import UserError

DATASETS = {"items": "Items", "users": "Users", "interactions": "Interactions"}
LIST_OPS = ("IN", "NOT IN")
COMPARE_OPS = ("=", "<", "<=", ">", ">=")
MAX_EXPRESSION_LENGTH = 2500
MAX_PARAMETER_NAME = 50  # a parameter's value comes as a filterValues key, at most 50 characters


class FilterError(UserError):
    """A filter expression error at a character position, shown with the expression and a caret."""

    def __init__(self, message: str, expression: str, position: int):
        self.message, self.expression, self.position = message, expression, position
        super().__init__(f"{message} (at position {position})\n  {expression}\n  {' ' * position}^")


# --------------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class StringList:
    """``("comedy", "drama")``: literal values (numbers keep their text)."""

    values: tuple[str, ...]
    numeric: tuple[bool, ...]  # which values were written as numbers, for printing them back

    def __str__(self) -> str:
        return "(" + ", ".join(v if n else quote(v) for v, n in zip(self.values, self.numeric)) + ")"


@dataclass(frozen=True)
class Number:
    text: str

    @property
    def value(self) -> float:
        return float(self.text)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Param:
    """``$NAME``: a value supplied per request in ``filterValues``."""

    name: str

    def __str__(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True)
class CurrentItem:
    """``CurrentItem.FIELD``: the item a related-items request is about."""

    field: str

    def __str__(self) -> str:
        return f"CurrentItem.{self.field}"


Value = StringList | Number | Param | CurrentItem


@dataclass(frozen=True)
class Condition:
    """``Items.GENRE IN ($GENRE)``; ``dataset`` is Items, Users, Interactions or CurrentUser."""

    dataset: str
    field: str
    op: str
    value: Value
    position: int = 0  # where the condition starts in the expression text (not part of equality)

    def __eq__(self, other) -> bool:
        return isinstance(other, Condition) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self):
        return self.dataset, self.field, self.op, self.value

    def __str__(self) -> str:
        value = f"({self.value})" if self.op in LIST_OPS and isinstance(self.value, Param) else str(self.value)
        return f"{self.dataset}.{self.field} {self.op} {value}"


@dataclass(frozen=True)
class Expression:
    """One ``INCLUDE|EXCLUDE ItemID|UserID WHERE ... [IF ...]``: ``any_of`` is a disjunction of
    conjunctions (AND binds tighter than OR); ``only_if`` the CurrentUser conditions, all of which must hold."""

    action: str
    target: str
    any_of: tuple[tuple[Condition, ...], ...]
    only_if: tuple[Condition, ...] = ()

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return tuple(c for group in self.any_of for c in group)

    @property
    def dataset(self) -> str:
        """The one dataset the WHERE part filters on."""
        return self.conditions[0].dataset

    @property
    def parameters(self) -> set[str]:
        return {c.value.name for c in (*self.conditions, *self.only_if) if isinstance(c.value, Param)}

    def __str__(self) -> str:
        where = " OR ".join(" AND ".join(str(c) for c in group) for group in self.any_of)
        text = f"{self.action} {self.target} WHERE {where}"
        return text + (" IF " + " AND ".join(str(c) for c in self.only_if) if self.only_if else "")


@dataclass(frozen=True)
class Filter:
    """Expressions joined with ``|``: (union of INCLUDE results) minus (union of EXCLUDE results)."""

    expressions: tuple[Expression, ...]

    @property
    def parameters(self) -> set[str]:
        return set().union(*(e.parameters for e in self.expressions))

    @property
    def datasets(self) -> set[str]:
        return {c.dataset for e in self.expressions for c in (*e.conditions, *e.only_if)} | \
            {"Items" for e in self.expressions for c in e.conditions if isinstance(c.value, CurrentItem)}

    def __str__(self) -> str:
        return " | ".join(str(e) for e in self.expressions)


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------------------ tokens

TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<open_string>"(?:[^"\\]|\\.)*\\?$)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z_]))
  | (?P<param>\$[A-Za-z0-9_]+)
  | (?P<bad_param>\$)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[(),|])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<other>.)
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int

    def describe(self) -> str:
        return "the end of the expression" if self.kind == "end" else f"'{self.text}'"


def tokenize(text: str) -> list[Token]:
    tokens = []
    for m in TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "space":
            continue
        if kind == "open_string":
            raise FilterError("unterminated string: a closing \" is missing", text, m.start())
        if kind == "bad_param":
            raise FilterError("a parameter is $ followed by letters, digits or _ (like $GENRE)", text, m.start())
        if kind == "param" and len(m.group()) - 1 > MAX_PARAMETER_NAME:
            raise FilterError(f"a parameter name has at most {MAX_PARAMETER_NAME} characters (the filterValues "
                              "key limit)", text, m.start())
        if kind == "op" and m.group() in ("!=", "<>", "=="):
            raise FilterError(f"unknown operator '{m.group()}'; use IN, NOT IN, =, <, <=, > or >=", text, m.start())
        if kind == "other":
            raise FilterError(f"unexpected character '{m.group()}'", text, m.start())
        tokens.append(Token(kind, m.group(), m.start()))
    tokens.append(Token("end", "", len(text)))
    return tokens


# ------------------------------------------------------------------------------------------------ parser


class _Parser:
    def __init__(self, text: str):
        self.text, self.tokens, self.i = text, tokenize(text), 0

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def fail(self, expected: str, token: Token | None = None):
        token = token or self.token
        raise FilterError(f"expected {expected}, found {token.describe()}", self.text, token.position)

    def keyword(self, *words: str) -> str | None:
        """Consume the next token if it is one of ``words`` (case-insensitive); return it canonically."""
        if self.token.kind == "word":
            for w in words:
                if self.token.text.lower() == w.lower():
                    self.i += 1
                    return w
        return None

    def expect(self, *words: str) -> str:
        found = self.keyword(*words)
        if found is None:
            self.fail(" or ".join(words))
        return found

    def punct(self, char: str) -> bool:
        if self.token.kind == "punct" and self.token.text == char:
            self.i += 1
            return True
        return False

    def parse(self) -> Filter:
        expressions = [self.expression()]
        while self.punct("|"):
            expressions.append(self.expression())
        if self.token.kind != "end":
            self.fail("AND, OR, IF, | or the end of the expression")
        return Filter(tuple(expressions))

    def expression(self) -> Expression:
        if self.token.kind == "end":
            self.fail("INCLUDE or EXCLUDE")
        action = self.expect("INCLUDE", "EXCLUDE")
        target = self.expect("ItemID", "UserID")
        self.expect("WHERE")
        groups, group = [], [self.condition()]
        while (joiner := self.keyword("AND", "OR")) is not None:
            if joiner == "OR":
                groups.append(tuple(group))
                group = []
            group.append(self.condition())
        groups.append(tuple(group))
        only_if = []
        if self.keyword("IF"):
            only_if.append(self.condition(current_user=True))
            while self.keyword("AND"):
                only_if.append(self.condition(current_user=True))
        return Expression(action, target, tuple(groups), tuple(only_if))

    def condition(self, current_user: bool = False) -> Condition:
        start = self.token
        expected = "CurrentUser.FIELD" if current_user else "a field such as Items.GENRE or Interactions.EVENT_TYPE"
        if start.kind != "word" or "." not in start.text:
            self.fail(expected)
        dataset, field = start.text.split(".", 1)
        if current_user:
            if dataset.lower() != "currentuser":
                self.fail(expected)
            dataset = "CurrentUser"
        elif dataset.lower() in DATASETS:
            dataset = DATASETS[dataset.lower()]
        else:
            raise FilterError(f"unknown dataset '{dataset}'; use Items, Users or Interactions", self.text,
                              start.position)
        self.i += 1
        op_token = self.token
        if self.keyword("NOT"):
            if not self.keyword("IN"):
                self.fail("IN after NOT")
            op = "NOT IN"
        elif self.keyword("IN"):
            op = "IN"
        elif op_token.kind == "op":
            op = op_token.text
            self.i += 1
        else:
            self.fail("an operator: IN, NOT IN, =, <, <=, > or >=")
        value = self.list_value() if op in LIST_OPS else self.scalar()
        return Condition(dataset, field, op, value, start.position)

    def current_item(self) -> CurrentItem | None:
        if self.token.kind == "word" and self.token.text.lower().startswith("currentitem."):
            field = self.token.text.split(".", 1)[1]
            self.i += 1
            return CurrentItem(field)
        return None

    def list_value(self) -> Value:
        if (item := self.current_item()) is not None:
            return item
        if not self.punct("("):
            self.fail('a list in parentheses such as ("a", "b"), ($PARAM) or CurrentItem.FIELD')
        if self.token.kind == "param":
            param = Param(self.token.text[1:])
            self.i += 1
        else:
            param, values, numeric = None, [], []
            while True:
                if self.token.kind == "string":
                    values.append(unquote(self.token.text))
                    numeric.append(False)
                elif self.token.kind == "number":
                    values.append(self.token.text)
                    numeric.append(True)
                else:
                    self.fail('a quoted value such as "comedy"' if not values else 'a quoted value after ","')
                self.i += 1
                if not self.punct(","):
                    break
        if not self.punct(")"):
            self.fail('"," or ")"')
        return param or StringList(tuple(values), tuple(numeric))

    def scalar(self) -> Value:
        if (item := self.current_item()) is not None:
            return item
        if self.token.kind == "number":
            self.i += 1
            return Number(self.tokens[self.i - 1].text)
        if self.token.kind == "param":
            self.i += 1
            return Param(self.tokens[self.i - 1].text[1:])
        if self.punct("("):  # `> ($VALUE)`, as some of the service's examples write it
            if self.token.kind != "param":
                self.fail("$PARAM inside the parentheses")
            param = Param(self.token.text[1:])
            self.i += 1
            if not self.punct(")"):
                self.fail('")"')
            return param
        self.fail("a number, $PARAM or CurrentItem.FIELD")


def unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def parse_filter(text: str) -> Filter:
    """Parse a filter expression; FilterError names the position and what was expected."""
    if not text.strip():
        raise FilterError("the filter expression is empty", text, 0)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise FilterError(f"the expression has {len(text)} characters; at most {MAX_EXPRESSION_LENGTH} are allowed",
                          text, MAX_EXPRESSION_LENGTH)
    return _Parser(text).parse()
