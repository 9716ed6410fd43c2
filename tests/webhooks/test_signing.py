"""Signatures as Standard Webhooks defines them, checked with its reference implementation
(the `standardwebhooks` package), not with Outlay's own code."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from outlay.webhooks.signing import headers, new_secret, sign, signature_header

BODY = json.dumps({"id": "evt_1", "type": "budget.warning", "data": {"spent_usd": "8.5"}})


def test_the_specification_test_vector() -> None:
    # the example of the Standard Webhooks specification
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330, '{"test": 2432232314}') == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")


def test_new_secrets_are_whsec_and_24_random_bytes() -> None:
    made = {new_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24


def test_a_signed_delivery_verifies() -> None:
    secret = new_secret()
    signed = headers([secret], "evt_1", int(time.time()), BODY.encode())
    assert set(signed) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(secret).verify(BODY, signed) == json.loads(BODY)


def test_matches_the_reference_signer() -> None:
    secret, now = new_secret(), int(time.time())
    from datetime import UTC, datetime

    assert sign(secret, "evt_9", now, BODY) == Webhook(secret).sign(
        "evt_9", datetime.fromtimestamp(now, UTC), BODY)


def test_bytes_and_text_bodies_sign_alike() -> None:
    secret = new_secret()
    assert sign(secret, "evt_1", 1, BODY) == sign(secret, "evt_1", 1, BODY.encode())


def test_a_tampered_body_fails() -> None:
    secret = new_secret()
    signed = headers([secret], "evt_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("8.5", "0.5"), signed)


def test_another_id_fails() -> None:
    secret = new_secret()
    signed = headers([secret], "evt_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**signed, "webhook-id": "evt_2"})


def test_another_secret_fails() -> None:
    signed = headers([new_secret()], "evt_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, signed)


def test_an_old_timestamp_fails_though_the_signature_is_right() -> None:
    secret = new_secret()
    signed = headers([secret], "evt_1", int(time.time()) - 600, BODY)  # replayed 10 min later
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, signed)


def test_during_a_rotation_both_secrets_sign_and_each_verifies() -> None:
    old, new = new_secret(), new_secret()
    now = int(time.time())
    value = signature_header([new, old], "evt_1", now, BODY)
    assert value.split(" ") == [sign(new, "evt_1", now, BODY), sign(old, "evt_1", now, BODY)]
    signed = headers([new, old], "evt_1", now, BODY)
    assert Webhook(old).verify(BODY, signed) == json.loads(BODY)
    assert Webhook(new).verify(BODY, signed) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, signed)


def test_a_malformed_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        sign("whsec_not base64!", "evt_1", 1, BODY)
    with pytest.raises(ValueError, match="empty"):
        sign("whsec_", "evt_1", 1, BODY)
