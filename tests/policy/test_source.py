"""The statement splitter: strings, comments, lines, and text it cannot cut."""

from __future__ import annotations

from tribune.policy.source import split_statements


def test_statements_carry_their_first_line() -> None:
    text = (
        "// header comment; not a statement\n"
        "\n"
        '@id("a")\n'
        "permit (principal, action, resource);\n"
        "  forbid (principal, action, resource);  // trailing\n"
    )
    statements, problems = split_statements("p.cedar", text)
    assert problems == []
    assert [(s.file, s.line) for s in statements] == [("p.cedar", 3), ("p.cedar", 5)]
    assert statements[0].text.startswith('@id("a")')
    assert statements[1].text == "forbid (principal, action, resource);"


def test_semicolons_and_slashes_inside_strings_do_not_split() -> None:
    text = (
        '@reason("stop; // not a comment \\" still; inside")\n'
        'permit (principal, action, resource) when { context.a like "x;*" };\n'
        "permit (principal, action, resource);\n"
    )
    statements, problems = split_statements("s.cedar", text)
    assert problems == []
    assert [s.line for s in statements] == [1, 3]
    assert 'like "x;*" }' in statements[0].text


def test_multiline_string_counts_lines() -> None:
    text = (
        '@reason("two\nlines")\npermit (principal, action, resource);\n'
        "\npermit(principal,action,resource);"
    )
    statements, _ = split_statements("m.cedar", text)
    assert [s.line for s in statements] == [1, 5]


def test_unterminated_string_is_a_problem_at_its_statement() -> None:
    statements, problems = split_statements(
        "u.cedar", 'permit(principal,action,resource);\n\n@id("x)\n'
    )
    assert len(statements) == 1
    assert [(p.line, p.message) for p in problems] == [(3, "unterminated string literal")]


def test_missing_semicolon_is_a_problem() -> None:
    _, problems = split_statements(
        "m.cedar", "permit(principal,action,resource);\npermit(principal,action,resource)\n// end"
    )
    assert [(p.line, p.message) for p in problems] == [(2, "policy does not end with `;`")]


def test_comment_only_file_has_no_statements() -> None:
    assert split_statements("c.cedar", "// nothing here\n   \n") == ([], [])
