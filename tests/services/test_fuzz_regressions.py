"""Regression tests for what the fuzzer (test_fuzz.py) found, one per finding."""

from __future__ import annotations

import msgspec

from lakehouse.services import app_factory


async def test_ingest_multipart_part_with_a_control_character_in_its_headers_is_400(
    config, aiohttp_client
):
    """Found by schemathesis: a multipart part whose Content-Disposition holds a control
    character made aiohttp's part parser raise InvalidHeader, answered as a 500."""
    client = await aiohttp_client(app_factory("ingestd")(config))
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="x\x12y"\r\n\r\n'
        "{}\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"\r\n\r\n'
        "a,b\r\n1,2\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    resp = await client.post(
        "/ingest?name=people",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status == 400, await resp.text()
    error = msgspec.json.decode(await resp.read())["error"]
    assert error["code"] == "bad_request"
    assert error["message"].startswith("malformed multipart body")
