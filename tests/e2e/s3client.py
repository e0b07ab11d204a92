"""A tiny S3 client on the standard library (SigV4-signed, path-style), for the tests and the
tiering benchmark: list, ranged GET, HEAD and DELETE against the SeaweedFS test server.

It exists so the suite can look at the bucket without pulling in boto3/botocore. One client
object holds one keep-alive HTTP connection; use one per thread.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import os
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(Exception):
    def __init__(self, status: int, body: bytes, what: str):
        super().__init__(f"{what}: HTTP {status}: {body[:300]!r}")
        self.status = status


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int


def _quote(s: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(s, safe=safe)


class S3Client:
    def __init__(self, endpoint: str | None = None, bucket: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None,
                 region: str | None = None, timeout: float = 30.0):
        endpoint = endpoint or os.environ["SHALE_TEST_S3_ENDPOINT"]
        u = urllib.parse.urlsplit(endpoint)
        self.host, self.port = u.hostname, u.port or 80
        self.bucket = bucket or os.environ.get("SHALE_TEST_S3_BUCKET", "shale-test")
        self.access_key = access_key or os.environ["AWS_ACCESS_KEY_ID"]
        self.secret_key = secret_key or os.environ["AWS_SECRET_ACCESS_KEY"]
        self.region = region or os.environ.get("AWS_REGION", "us-east-1")
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.requests = 0  # requests this client sent

    # --- signing ---------------------------------------------------------------------------

    def _headers(self, method: str, path: str, query: dict[str, str], extra: dict[str, str]):
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        host = f"{self.host}:{self.port}"
        headers = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": EMPTY_SHA256}
        headers.update({k.lower(): v for k, v in extra.items()})
        canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
        signed = sorted(headers)
        canonical_headers = "".join(f"{k}:{headers[k].strip()}\n" for k in signed)
        signed_names = ";".join(signed)
        canonical = "\n".join([method, path, canonical_query, canonical_headers, signed_names,
                               EMPTY_SHA256])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={signed_names}, Signature={sig}")
        return headers, canonical_query

    def request(self, method: str, key: str | None = None, query: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        query = query or {}
        path = f"/{self.bucket}" + ("" if key is None else "/" + _quote(key, safe="-_.~/"))
        hdrs, qs = self._headers(method, path, query, headers or {})
        url = path + (f"?{qs}" if qs else "")
        for attempt in (0, 1):  # one retry on a stale keep-alive connection
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, url, headers=hdrs)
                resp = self.conn.getresponse()
                body = resp.read()
                self.requests += 1
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # --- operations -------------------------------------------------------------------------

    def list(self, prefix: str = "") -> list[S3Object]:
        out: list[S3Object] = []
        token = None
        while True:
            q = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                q["continuation-token"] = token
            status, _, body = self.request("GET", None, q)
            if status != 200:
                raise S3Error(status, body, f"LIST {prefix}")
            root = ET.fromstring(body)
            for c in root.iter(f"{_NS}Contents"):
                out.append(S3Object(c.findtext(f"{_NS}Key"), int(c.findtext(f"{_NS}Size"))))
            if root.findtext(f"{_NS}IsTruncated") == "true":
                token = root.findtext(f"{_NS}NextContinuationToken")
            else:
                return out

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """The object, or bytes start..end inclusive of it."""
        headers = {}
        if start is not None:
            headers["range"] = f"bytes={start}-{'' if end is None else end}"
        status, _, body = self.request("GET", key, headers=headers)
        if status not in (200, 206):
            raise S3Error(status, body, f"GET {key}")
        return body

    def delete(self, key: str) -> None:
        status, _, body = self.request("DELETE", key)
        if status not in (200, 204):
            raise S3Error(status, body, f"DELETE {key}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
