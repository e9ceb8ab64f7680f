"""The app factory's own parts."""

from flask import Flask, session


def test_a_session_set_in_one_request_is_read_in_the_next(app: Flask) -> None:
    # Sessions are opened only for requests that bring the cookie (formrelay.CookieSessions).
    @app.get("/_count")
    def count() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert [client.get("/_count").text for _ in range(3)] == ["1", "2", "3"]
    client.set_cookie("session", "forged")
    assert client.get("/_count").text == "1"  # a cookie that does not verify is ignored
    assert app.test_client().get("/_count").text == "1"  # another browser starts afresh


def test_a_request_without_a_session_cookie_sets_none(app: Flask) -> None:
    response = app.test_client().get("/")
    assert "Set-Cookie" not in response.headers
