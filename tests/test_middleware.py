"""The ASGI middlewares as clients meet them on a real server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import PluginServer

pytestmark = pytest.mark.slow


def urllib_post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, str]]:
    """POST with Python's urllib, which sends the whole body before it reads the answer."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_urllib_reads_the_413_of_a_10_mb_json_body(tmp_path: Path) -> None:
    with PluginServer("todo", "--data-dir", str(tmp_path)) as server:
        body = json.dumps({"todo": "x" * 10_000_000}).encode()
        status, answer = urllib_post(f"{server.base_url}/todos/alice", body, "application/json")
        again, _ = urllib_post(f"{server.base_url}/todos/alice", b'{"todo": "small"}', "application/json")
    assert status == 413 and answer == {"detail": "request body is larger than the limit of 1000000 bytes"}
    assert again == 200


def test_urllib_reads_the_413_of_a_101_mb_upload(tmp_path: Path) -> None:
    boundary = "plugkit-test-boundary"
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'.encode(),
            b"Content-Type: text/plain\r\n\r\n",
            b"a" * (101 * 1024 * 1024),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    with PluginServer("retrieval", "--data-dir", str(tmp_path)) as server:
        status, answer = urllib_post(
            f"{server.base_url}/upsert-file", body, f"multipart/form-data; boundary={boundary}"
        )
    assert status == 413 and "request body is larger than the limit" in answer["detail"]
