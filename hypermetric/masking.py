"""Secrets never leave in clear: one function masks them in any text shown, logged or stored.

Every layer may import this module (it imports nothing of Hypermetric). :func:`masked`
replaces with ``***``:

* the user info of every URL or URI in the text: ``postgresql+psycopg://user:pw@db/hm``
  becomes ``postgresql+psycopg://***@db/hm``, ``s3://key:secret@bucket`` ``s3://***@bucket``;
* the values of credential parameters: ``?password=...``, ``&secret_key=...``,
  ``token=...`` in a query string, ``password=...`` in a libpq connection string;
* wherever they appear, the values of environment variables named like credentials
  (``AWS_SECRET_ACCESS_KEY``, ``AWS_ACCESS_KEY_ID``, ``AWS_SESSION_TOKEN``, ``PGPASSWORD``,
  ``HYPERMETRIC_UI_TOKEN``, ``RAY_AUTH_TOKEN``, any ``*_TOKEN``, ``*_SECRET``,
  ``*_PASSWORD``, ``*_KEY``), and the passwords inside URLs that environment variables hold
  (``HYPERMETRIC_DB_URL``, ``HYPERMETRIC_STORAGE``). Values shorter than six characters
  are masked only where they appear as a URL's user info or a parameter.

:class:`MaskingFormatter` applies it to every line a logging handler writes, tracebacks
included.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import unquote

__all__ = ["MASK", "MaskingFormatter", "masked", "masker", "secret_values"]

MASK = "***"

#: ``scheme://userinfo@`` in a text: the user info ends at the last ``@`` before the path
#: (``s3://bucket/a@b`` has none)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s'\"<>/?#]*@")
#: ``scheme://user:password@``, the password as SQLAlchemy reads it (it may hold ``/``)
_USER_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s'\"<>:/?#@]*:[^\s'\"<>@]*@")
#: a credential parameter: ``password=``, ``secret_key=``, ``token=``, ``sig=``...
_PARAM = re.compile(
    r"(?i)(\b[\w.-]*(?:pass(?:word|wd)?|pwd|secret|token|_key|apikey|sig(?:nature)?|"
    r"credentials?)[\"']?\s*[=:]\s*[\"']?)([^\s&;,'\"<>]+)"
)
#: environment variables whose values are credentials
_SECRET_NAME = re.compile(r"(?i)(secret|token|password|passwd|_key|key_id|credentials?)$")
#: shorter values are not masked as literals (they would mask ordinary words and numbers)
_MIN_LITERAL = 6
#: the password of a URL-valued setting
_SETTING_PASSWORD = re.compile(r"(?i)^\s*[a-z][a-z0-9+.-]*://[^\s:/?#@]*:([^\s@]*)@")


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The credential values of an environment, longest first (for :func:`masked`)."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        if _SECRET_NAME.search(name):
            found.add(value)
        url = _SETTING_PASSWORD.match(value)  # the user name alone is no secret
        if url is not None:
            found.update((url.group(1), unquote(url.group(1))))
    found = {v for v in found if len(v) >= _MIN_LITERAL}
    return sorted(found, key=len, reverse=True)


def masked(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials masked (see the module's docstring); ``secrets`` are
    further values to mask wherever they appear."""
    return masker(secrets)(text)


def masker(secrets: Iterable[str] = ()) -> Callable[[str], str]:
    """:func:`masked` with the environment read once, for masking many values (a table's
    cells) at the cost of the patterns alone."""
    values = [v for v in (*secret_values(), *secrets) if v]

    def mask(text: str) -> str:
        if not text:
            return text
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
        text = _USER_PASSWORD.sub(rf"\1{MASK}@", text)
        text = _USERINFO.sub(rf"\1{MASK}@", text)
        return _PARAM.sub(rf"\1{MASK}", text)

    return mask


class MaskingFormatter(logging.Formatter):
    """A formatter whose every line, traceback included, has its credentials masked."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as the base formatter writes it, masked."""
        return masked(super().format(record))
