"""Split Cedar policy text into statements, remembering where each one starts.

Cedar's parser reports neither line numbers nor which statement failed, so Tribune cuts each
``.cedar`` file into its policy statements first and hands them to Cedar one by one. The lexer
knows just enough Cedar to do that: string literals (with backslash escapes), ``//`` comments
and the ``;`` that ends a statement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Statement:
    """One policy statement: its text (up to and including ``;``), file and first line."""

    file: str
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """Text the lexer could not cut into statements (an open string, a missing ``;``)."""

    file: str
    line: int
    message: str


def split_statements(file: str, text: str) -> tuple[list[Statement], list[SourceProblem]]:
    """Cut ``text`` into statements ending with ``;``; comments between statements are dropped.

    A statement starts at its first character that is neither blank nor part of a comment, so
    its line is where its annotations (or ``permit``/``forbid``) begin.
    """
    statements: list[Statement] = []
    problems: list[SourceProblem] = []
    line = 1
    start = -1  # offset where the current statement began; -1 between statements
    start_line = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch == '"':
            if start < 0:
                start, start_line = i, line
            i, line, closed = _skip_string(text, i, line)
            if not closed:
                problems.append(SourceProblem(file, start_line, "unterminated string literal"))
                return statements, problems
        elif ch in " \t\r":
            i += 1
        else:
            if start < 0:
                start, start_line = i, line
            if ch == ";":
                statements.append(Statement(file, start_line, text[start : i + 1]))
                start = -1
            i += 1
    if start >= 0:
        problems.append(SourceProblem(file, start_line, "policy does not end with `;`"))
    return statements, problems


def _skip_string(text: str, i: int, line: int) -> tuple[int, int, bool]:
    """Skip the string literal opening at ``i``; return (offset after it, line, closed)."""
    i += 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                line += 1
            i += 2
        elif ch == '"':
            return i + 1, line, True
        else:
            if ch == "\n":
                line += 1
            i += 1
    return n, line, False
