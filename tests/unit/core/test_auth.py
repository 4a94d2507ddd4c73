"""TokenSet (constant-time check against every token), the token file's lines, Bearer headers."""

from __future__ import annotations

import hmac

import pytest

from whisper_streaming.core import auth
from whisper_streaming.core.auth import TokenSet, bearer_token, check_token, parse_token_lines


def test_verify_accepts_each_valid_token_and_nothing_else() -> None:
    tokens = TokenSet(("alpha-1", "beta_2", "g/a+m.m~a"))
    assert all(tokens.verify(t) for t in ("alpha-1", "beta_2", "g/a+m.m~a"))
    for wrong in ("alpha-", "alpha-12", "ALPHA-1", "", " alpha-1", "alpha-1\n", "ålpha-1", None, 42):
        assert not tokens.verify(wrong)  # type: ignore[arg-type]


def test_verify_compares_against_every_token_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", compare)
    tokens = TokenSet(("first", "second", "third"))
    assert tokens.verify("first")  # a match on the first token still compares all three
    assert [b for _, b in calls] == [b"first", b"second", b"third"]
    calls.clear()
    assert not tokens.verify("nope")
    assert len(calls) == 3


def test_repr_never_shows_a_token() -> None:
    tokens = TokenSet(("very-secret-token",))
    assert "very-secret-token" not in repr(tokens) and "very-secret-token" not in str(tokens)
    assert repr(tokens) == "TokenSet(<1 token(s)>)"


@pytest.mark.parametrize("bad", ["", "has space", "semi;colon", "eq=uals", "new\nline", "ü", "x" * 513])
def test_token_syntax(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        check_token(bad)
    assert bad not in str(info.value) or bad == ""
    with pytest.raises(ValueError):
        TokenSet((bad,))
    assert check_token("A-Za-z0-9._~+/") == "A-Za-z0-9._~+/"
    assert check_token("x" * 512)


def test_an_empty_token_set_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        TokenSet(())


def test_token_file_lines() -> None:
    text = "# tokens for the call centre\n\n  first-token  \nsecond # the web page\n#third\nfirst-token\n"
    assert parse_token_lines(text) == ("first-token", "second")
    assert parse_token_lines("# nothing\n\n") == ()


def test_a_bad_token_file_line_names_its_number_not_its_text() -> None:
    with pytest.raises(ValueError) as info:
        parse_token_lines("good\nbad secret here\n")
    assert str(info.value).startswith("line 2:")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    "header,token",
    [("Bearer abc.def", "abc.def"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"), ("Basic dXNlcjpwdw==", None), ("Bearer", None),
     ("Bearer ", None), ("", None), (None, None), ("abc", None)],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
