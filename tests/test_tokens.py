import pytest

from tracking.tokens import BadToken, Signer


def test_message_token_round_trip_and_rotation() -> None:
    old = Signer(["old-key"])
    token = old.message_token(42)
    rotated = Signer(["new-key", "old-key"])
    assert rotated.verify_message(token) == 42
    assert rotated.verify_message(rotated.message_token(7)) == 7
    with pytest.raises(BadToken):
        Signer(["new-key"]).verify_message(token)


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1],
    lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],
    lambda t: "MQ" + t[t.index("."):],  # another message id with the old signature
    lambda t: t.replace(".", ""),
    lambda t: "",
])
def test_altered_tokens_are_refused(mutate) -> None:
    signer = Signer(["k"])
    with pytest.raises(BadToken):
        signer.verify_message(mutate(signer.message_token(12345)))


def test_url_token_domain_separated_and_http_only() -> None:
    signer = Signer(["k"])
    url_tok = signer.url_token("https://shop.test/a?b=1&c=2")
    assert signer.verify_url(url_tok) == "https://shop.test/a?b=1&c=2"
    # A message token is not a valid URL token and vice versa.
    with pytest.raises(BadToken):
        signer.verify_url(signer.message_token(1))
    with pytest.raises(BadToken):
        signer.verify_url(signer.url_token("javascript:alert(1)"))
