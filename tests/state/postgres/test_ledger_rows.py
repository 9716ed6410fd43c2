"""A ledger row goes to the INSERT as it is when it is ready (its NOT NULL numbers there,
its labels JSON text); otherwise it is completed first, as it always was."""

from __future__ import annotations

from typing import Any

from outlay.state.postgres.ledger import ROW_COLUMNS, _row


def ready() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
    row.update(request_id="r1", reserved=5, cost=0, tokens=0, labels='{"team":"a"}')
    return row


def test_a_ready_row_is_taken_as_it_is() -> None:
    row = ready()
    assert _row(row) is row
    assert _row({**row, "labels": None}) == {**row, "labels": None}


def test_a_row_lacking_a_number_is_completed_with_zero() -> None:
    row = ready()
    del row["tokens"]
    row["cost"] = None
    completed = _row(row)
    assert (completed["tokens"], completed["cost"], completed["reserved"]) == (0, 0, 5)
    assert set(completed) == set(ROW_COLUMNS)


def test_labels_as_a_mapping_become_json_text() -> None:
    row = {**ready(), "labels": {"team": "a"}}
    assert _row(row)["labels"] == '{"team":"a"}'
