"""SigV4 signatures of the SDK clients, checked against the configured key pairs with botocore's own signer
(the canonical request and string to sign are botocore's, not rebuilt here).

Key pairs come from ``RECSYS_SPARK_SERVE_KEYS`` (``KEYID:SECRET,KEYID:SECRET``) and the config's
``serve.keys_file`` (one ``KEYID:SECRET`` per line), never from the config itself.

>>> keys = parse_keys("AKIDEXAMPLE:secret1, AKID2:secret2")
>>> sorted(keys)
['AKID2', 'AKIDEXAMPLE']
"""

from __future__ import annotations

import hmac
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

KEYS_VARIABLE = "RECSYS_SPARK_SERVE_KEYS"
MAX_SKEW = timedelta(minutes=15)  # the window AWS accepts between a request's X-Amz-Date and now
AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                           r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})")


class AuthError(Exception):
    """A refused signature: ``code`` is the service's error type."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_keys(text: str) -> dict[str, str]:
    """``KEYID:SECRET`` pairs separated by commas or new lines."""
    keys = {}
    for pair in re.split(r"[,\n]", text):
        if pair.strip():
            key, _, secret = pair.strip().partition(":")
            if not key or not secret:
                raise ValueError("key pairs are KEYID:SECRET")
            keys[key] = secret
    return keys


def load_keys(keys_file: str | None) -> dict[str, str]:
    """The key pairs of the environment and of ``keys_file``."""
    keys = parse_keys(os.environ.get(KEYS_VARIABLE, ""))
    if keys_file:
        keys |= parse_keys(Path(keys_file).read_text())
    return keys


def check_signature(keys: dict[str, str], method: str, path: str, query: str, headers: dict[str, str],
                    body: bytes, now: datetime | None = None) -> str:
    """The key ID that signed the request; AuthError when it is missing, unknown, stale or wrong.
    ``headers``: lower-case names -> values, as received."""
    match = AUTHORIZATION.fullmatch(headers.get("authorization", "").strip())
    if match is None:
        raise AuthError("MissingAuthenticationTokenException", "the request is not signed with SigV4")
    key_id, _, region, service, signed, signature = match.groups()
    secret = keys.get(key_id)
    if secret is None:
        raise AuthError("UnrecognizedClientException", "The security token included in the request is invalid.")
    stamp = headers.get("x-amz-date", "")
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise AuthError("InvalidSignatureException", "X-Amz-Date is missing or malformed") from None
    if abs((now or datetime.now(timezone.utc)) - when) > MAX_SKEW:
        raise AuthError("InvalidSignatureException", "Signature expired: the request time is more than 15 "
                                                     "minutes from the server's time")
    names = signed.split(";")
    request = AWSRequest(method=method, url=f"http://{headers.get('host', '')}{path}" + (f"?{query}" if query else ""),
                         headers={n: headers.get(n, "") for n in names}, data=body)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key_id, secret), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        raise AuthError("InvalidSignatureException", "The request signature we calculated does not match the "
                                                     "signature you provided.")
    return key_id
