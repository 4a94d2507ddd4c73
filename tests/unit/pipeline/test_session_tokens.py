"""Access tokens in the session (sans-IO): ``SetOptions`` with ``token``, ``BeginStream`` refused
without one, the limited status before one; tokens off changes nothing."""

from __future__ import annotations

import pytest

from whisper_streaming.core.auth import TokenSet
from whisper_streaming.core.options import StreamOptions
from whisper_streaming.errors import ErrorReason
from whisper_streaming.pipeline.commands import BeginStream, Identify, OptionsSet, RequestStatus, SessionFailed, SetOptions, Welcomed
from whisper_streaming.pipeline.session import Close, Deliver, Session, SessionOptions, SessionState, StatusRequested, StreamStarted

GOOD = "good-Token_1"
OTHER = "other.token~2"
TOKENS = TokenSet((GOOD, OTHER))


def deliveries(actions: list) -> list:
    return [a.output for a in actions if isinstance(a, Deliver)]


def session(tokens: TokenSet | None = TOKENS) -> Session:
    s = Session(SessionOptions(tokens=tokens))
    assert deliveries(s.handle(Identify("alice"))) == [Welcomed("Welcome!")]  # %u needs no token
    return s


def assert_unauthorized(s: Session, actions: list) -> None:
    assert deliveries(actions) == [SessionFailed(ErrorReason.UNAUTHORIZED)]
    assert isinstance(actions[-1], Close)
    assert s.state is SessionState.CLOSED
    for secret in (GOOD, OTHER, "wrong-token"):
        assert secret not in (s.close_reason or "") and secret not in repr(actions)


def test_begin_without_a_token_is_unauthorized() -> None:
    s = session()
    assert not s.authenticated
    assert_unauthorized(s, s.handle(BeginStream()))


@pytest.mark.parametrize("token", ["wrong-token", GOOD + "x", GOOD[:-1], "", GOOD.upper()])
def test_a_wrong_token_is_unauthorized_at_once(token: str) -> None:
    s = session()
    assert_unauthorized(s, s.handle(SetOptions((("token", token),))))
    assert s.handle(BeginStream()) == []  # closed: nothing more happens


@pytest.mark.parametrize("token", [GOOD, OTHER])
def test_a_right_token_allows_streams_and_is_never_echoed(token: str) -> None:
    s = session()
    actions = s.handle(SetOptions((("sentiment", "1"), ("token", token))))
    assert deliveries(actions) == [OptionsSet((("sentiment", "1"),))]  # the token is not in %O
    assert s.authenticated
    assert s.stream_options == StreamOptions(sentiment=True)
    assert s.handle(BeginStream()) == [StreamStarted(0, "alice", 16000)]
    assert token not in repr(SetOptions((("token", token),)))  # the command's repr hides it


def test_options_without_the_token_before_it_are_unauthorized() -> None:
    s = session()
    assert_unauthorized(s, s.handle(SetOptions((("sentiment", "1"),))))


def test_options_without_the_token_after_it_are_fine() -> None:
    s = session()
    s.handle(SetOptions((("token", GOOD),)))
    assert deliveries(s.handle(SetOptions((("sentiment", "1"),)))) == [OptionsSet((("sentiment", "1"),))]


def test_status_is_limited_until_a_valid_token() -> None:
    s = session()
    assert s.handle(RequestStatus()) == [StatusRequested(limited=True)]
    s.handle(SetOptions((("token", GOOD),)))
    assert s.handle(RequestStatus()) == [StatusRequested(limited=False)]


def test_a_later_wrong_token_ends_an_authenticated_session() -> None:
    s = session()
    s.handle(SetOptions((("token", GOOD),)))
    assert_unauthorized(s, s.handle(SetOptions((("token", "wrong-token"),))))


def test_options_before_the_user_id_are_still_refused_first() -> None:
    s = Session(SessionOptions(tokens=TOKENS))
    assert deliveries(s.handle(SetOptions((("token", GOOD),)))) == [SessionFailed(ErrorReason.OPTIONS_BEFORE_USER)]


def test_tokens_off_changes_nothing() -> None:
    s = session(None)
    assert s.authenticated
    assert s.handle(RequestStatus()) == [StatusRequested(limited=False)]
    assert deliveries(s.handle(SetOptions((("token", "anything"),)))) == [OptionsSet(())]  # ignored like an unknown key
    assert s.handle(BeginStream()) == [StreamStarted(0, "alice", 16000)]
