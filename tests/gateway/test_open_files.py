"""`outlay serve` raises its open-file limit so that max_connections can be open."""

from __future__ import annotations

import resource

from outlay.gateway.server import FILES_BESIDE_CONNECTIONS, open_files_wanted


def test_the_limit_makes_room_for_max_connections_within_the_hard_limit() -> None:
    room = 1000 + FILES_BESIDE_CONNECTIONS
    assert open_files_wanted(256, 4096, 1000) == room
    assert open_files_wanted(256, resource.RLIM_INFINITY, 1000) == room
    assert open_files_wanted(256, 512, 1000) == 512  # as far as the hard limit lets it
    assert open_files_wanted(65_536, 1_048_576, 1000) == 65_536  # never lowered
