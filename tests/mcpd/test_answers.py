"""lakehouse.mcp.answers: cutting long answers with a paging note, wording failures."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.clients.base import UpstreamError
from lakehouse.mcp.answers import TRUNCATED_KEY, failure_message, render


@given(st.lists(st.text(max_size=80), max_size=60), st.integers(min_value=200, max_value=3000))
def test_a_cut_answer_fits_and_keeps_a_prefix(items, limit):
    answer = {"results": items, "count": len(items)}
    text, cut = render(answer, limit, "ask for less")
    full = orjson.dumps(answer).decode()
    if len(full) <= limit:
        assert not cut and text == full
        return
    assert cut and len(text) <= limit
    if text.startswith("{"):
        doc = orjson.loads(text)
        note = doc[TRUNCATED_KEY]
        assert note["field"] == "results" and note["total"] == len(items)
        assert doc["results"] == items[: note["returned"]] and note["how_to_page"] == "ask for less"
    else:
        assert text.endswith("ask for less]")


def test_a_list_answer_is_wrapped_and_a_listless_one_cut_as_text():
    text, cut = render(list(range(1000)), 300, "page")
    doc = orjson.loads(text)
    assert cut and doc["items"] == list(range(doc[TRUNCATED_KEY]["returned"]))
    text, cut = render({"blob": "x" * 5000}, 1000, "page")
    assert cut and len(text) <= 1000 and "[truncated: 1000 of 5011 characters shown; page]" in text


def test_failures_name_the_daemon():
    gw = "http://127.0.0.1:3110"
    assert failure_message(UpstreamError("queryd", 400, "no such table"), gw) == (
        "queryd refused the call (400): no such table"
    )
    body = {"error": "every attempt failed", "iterations": 3, "history": []}
    msg = failure_message(UpstreamError("validatord", 422, "every attempt failed", body), gw)
    assert msg.startswith("validatord refused the call (422): every attempt failed\nanswer: {")
    assert failure_message(UpstreamError("matrixd", 502, "vectord down"), gw) == "matrixd failed (502): vectord down"
    assert failure_message(UpstreamError("chatd", 504, "provider timeout"), gw) == "chatd timed out (504): provider timeout"
    try:
        raise UpstreamError("chatd", None, "timed out") from TimeoutError()
    except UpstreamError as exc:
        assert failure_message(exc, gw).startswith("chatd did not answer in time")
    down = failure_message(UpstreamError("embedd", None, "unreachable"), gw)
    assert down.startswith(f"the gateway at {gw} could not be reached, so embedd was not called")
