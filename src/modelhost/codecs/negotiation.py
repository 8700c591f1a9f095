"""Parsing of Content-Type and Accept headers (RFC 9110 media ranges with q-values)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MediaType:
    type: str  # "application/json", lower case, no parameters
    charset: str  # "utf-8" unless the header says otherwise


def parse_content_type(header: str | None) -> MediaType:
    """``application/json; charset=UTF-8`` -> MediaType("application/json", "utf-8")."""
    if not header:
        return MediaType("", "utf-8")
    main, *params = header.split(";")
    charset = "utf-8"
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower() or "utf-8"
    return MediaType(main.strip().lower(), charset)


def parse_accept(header: str | None) -> list[str]:
    """Media ranges in order of preference (q=0 dropped); empty when the client accepts anything."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        main, *params = item.split(";")
        media = main.strip().lower()
        if not media:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media))
    ranked.sort()
    media_ranges = [media for _, _, media in ranked]
    return [] if media_ranges and media_ranges[0] == "*/*" else media_ranges
