"""Request and response codecs, looked up by media type in one immutable table.

Never add a code-bearing format (pickle, joblib) here: a request body is untrusted input.
"""

from __future__ import annotations

import codecs as charsets
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from modelhost.codecs.csv import CsvCodec
from modelhost.codecs.json import JsonCodec
from modelhost.codecs.jsonlines import JsonLinesCodec
from modelhost.codecs.negotiation import MediaType, parse_accept, parse_content_type
from modelhost.codecs.npy import NpyCodec
from modelhost.codecs.text import TextCodec
from modelhost.codecs.types import Codec, Decoded, Envelope
from modelhost.errors import NotAcceptable, UnsupportedMediaType

__all__ = ["Codec", "CodecTable", "Decoded", "Envelope", "MediaType", "default_codecs"]

_CACHE_SIZE = 256  # distinct header values remembered; errors are never cached
DEFAULT_CODEC_CLASSES: tuple[type[Codec], ...] = (JsonCodec, CsvCodec, JsonLinesCodec, TextCodec, NpyCodec)


class CodecTable:
    """Media type -> codec, plus Content-Type and Accept negotiation.

    A request without a Content-Type is read as JSON. Without an Accept (or with ``*/*``) the answer
    uses ``default_accept`` when set, else the request's own media type (text/plain answers in JSON).
    """

    def __init__(self, codecs: Iterable[Codec], default_accept: str | None = None) -> None:
        table: dict[str, Codec] = {}
        for codec in codecs:
            for name in (codec.media_type, *codec.aliases):
                table[name] = codec
        self._by_type: Mapping[str, Codec] = MappingProxyType(table)
        self.json = table["application/json"]
        self._default_accept = default_accept
        self.media_types = tuple(sorted({c.media_type for c in table.values()}))
        self._request_cache: dict[str | None, tuple[Codec, MediaType]] = {}
        self._response_cache: dict[tuple[str | None, str], Codec] = {}

    def for_request(self, content_type: str | None) -> tuple[Codec, MediaType]:
        """The codec for a Content-Type header (remembered: clients send the same few headers)."""
        found = self._request_cache.get(content_type)
        if found is None:
            found = self._negotiate_request(content_type)
            if len(self._request_cache) >= _CACHE_SIZE:
                self._request_cache.clear()
            self._request_cache[content_type] = found
        return found

    def for_response(self, accept: str | None, request_codec: Codec) -> Codec:
        """The codec for an Accept header, given the request's codec."""
        key = (accept, request_codec.media_type)
        found = self._response_cache.get(key)
        if found is None:
            found = self._negotiate_response(accept, request_codec)
            if len(self._response_cache) >= _CACHE_SIZE:
                self._response_cache.clear()
            self._response_cache[key] = found
        return found

    def _negotiate_request(self, content_type: str | None) -> tuple[Codec, MediaType]:
        media = parse_content_type(content_type)
        if not media.type:
            return self.json, media
        codec = self._by_type.get(media.type)
        if codec is None:
            hint = (
                " (curl -d sends this; add -H 'Content-Type: application/json')"
                if media.type == "application/x-www-form-urlencoded"
                else ""
            )
            raise UnsupportedMediaType(
                f"Content-Type {media.type!r} is not supported; use one of: {', '.join(self.media_types)}{hint}"
            )
        if media.charset not in ("utf-8", "utf8"):
            try:
                charsets.lookup(media.charset)
            except LookupError as exc:
                raise UnsupportedMediaType(f"charset {media.charset!r} is not supported; send utf-8") from exc
        return codec, media

    def _negotiate_response(self, accept: str | None, request_codec: Codec) -> Codec:
        ranges = parse_accept(accept)
        if not ranges:
            if self._default_accept:
                return self._by_type.get(self._default_accept, self.json)
            return self.json if isinstance(request_codec, TextCodec) else request_codec
        for media_range in ranges:
            if media_range == "*/*":
                return request_codec
            codec = self._by_type.get(media_range)
            if codec is not None:
                return codec
            if media_range.endswith("/*"):
                prefix = media_range[:-1]
                if request_codec.media_type.startswith(prefix):
                    return request_codec
                for name in self.media_types:  # canonical names only, not aliases like text/json
                    if name.startswith(prefix):
                        return self._by_type[name]
        raise NotAcceptable(f"cannot answer with {accept!r}; this server writes: {', '.join(self.media_types)}")

    def by_media_type(self, media_type: str) -> Codec | None:
        return self._by_type.get(media_type)


def default_codecs(default_accept: str | None = None) -> CodecTable:
    return CodecTable((cls() for cls in DEFAULT_CODEC_CLASSES), default_accept)
