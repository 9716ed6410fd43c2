"""`outlay serve` on an address another program listens on names the address and the way out."""

from __future__ import annotations

import pytest

from outlay.gateway.server import bind


def test_an_address_in_use_names_the_address_and_suggests_port() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:\d+: address "
                                          r"already in use") as caught:
            bind("127.0.0.1", port)
        assert f"127.0.0.1:{port}" in str(caught.value)
        assert "--port" in str(caught.value)
    finally:
        taken.close()
