"""Human-readable text out of FHIR resources: decoded Attachment data (plain, HTML, RTF, PDF), narrative and
free-text elements, so that grep can search what a clinician would read.

Decoding never raises on bad content: a broken, oversized, encrypted or unsupported attachment yields None,
and `extract_attachment` says why (the reason names a condition, never content).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

MAX_DECODED_BYTES = 5 * 1024 * 1024
MAX_PDF_PAGES = 50
MAX_TEXT_CHARS = 1_000_000
_MAX_DEPTH = 64

_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "section"}
    | {"article", "header", "footer", "blockquote", "pre", "hr", "dt", "dd", "dl", "title", "caption"}
)
_SKIP_TAGS = frozenset({"script", "style", "head", "template", "noscript"})
# Elements whose string values are prose meant for people (FHIR R4 element names).
_TEXT_KEYS = frozenset(
    {"text", "display", "description", "comment", "title", "summary", "conclusion", "patientInstruction"}
    | {"instruction", "note", "purpose", "label", "question", "reason"}
)
_SKIP_KEYS = frozenset({"id", "reference", "system", "url", "profile", "data", "resourceType", "meta", "version"})


@dataclass(frozen=True, slots=True)
class Extraction:
    """The text of one attachment, or None with a short non-PHI reason."""

    text: str | None
    reason: str | None = None


def _media_type(content_type: Any) -> tuple[str, dict[str, str]]:
    """Split "text/plain; charset=utf-8" into ("text/plain", {"charset": "utf-8"})."""
    if not isinstance(content_type, str):
        return "", {}
    head, *rest = content_type.split(";")
    params: dict[str, str] = {}
    for item in rest:
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return head.strip().lower(), params


def _decode_base64(data: Any) -> bytes | Extraction:
    if not isinstance(data, str) or not data:
        return Extraction(None, "no inline data")
    if len(data) > (MAX_DECODED_BYTES * 4) // 3 + 1024:
        return Extraction(None, "attachment too large")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return Extraction(None, "data is not valid base64")
    if len(raw) > MAX_DECODED_BYTES:
        return Extraction(None, "attachment too large")
    return raw


class _HtmlText(HTMLParser):
    """Collects the visible text of HTML/XHTML, with line breaks at block elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS or tag in ("td", "th"):
            self.parts.append("\n" if tag in _BLOCK_TAGS else " ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of HTML or an XHTML narrative div: tags, scripts and styles removed, blocks on new lines."""
    parser = _HtmlText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # html.parser is lenient; anything it still raises means "no usable text"
        return ""
    return _tidy("".join(parser.parts))


def _tidy(text: str) -> str:
    """Collapse runs of spaces inside lines and blank lines between them."""
    lines = (" ".join(line.split()) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()[:MAX_TEXT_CHARS]


def _plain(raw: bytes, charset: str | None) -> str:
    try:
        text = raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # unknown charset name: fall back to UTF-8
        text = raw.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").strip()[:MAX_TEXT_CHARS]


def _rtf(raw: bytes) -> Extraction:
    from striprtf.striprtf import rtf_to_text

    convert: Callable[..., str] = rtf_to_text
    try:
        text = convert(raw.decode("cp1252", errors="replace"), errors="ignore")
    except Exception:  # striprtf raises assorted errors on malformed input
        return Extraction(None, "rtf could not be read")
    return Extraction(_tidy(str(text)))


def _pdf(raw: bytes) -> Extraction:
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns freely on sloppy files; not our log
    try:
        reader = PdfReader(io.BytesIO(raw), strict=False)
        if reader.is_encrypted:
            return Extraction(None, "pdf is encrypted")
        pages: list[str] = []
        size = 0
        for page in reader.pages[:MAX_PDF_PAGES]:
            chunk = page.extract_text() or ""
            pages.append(chunk)
            size += len(chunk)
            if size > MAX_TEXT_CHARS:
                break
    except Exception:  # a broken PDF can make pypdf raise almost anything; it must never reach the caller
        return Extraction(None, "pdf could not be read")
    return Extraction(_tidy("\n".join(pages)))


def extract_attachment(attachment: Mapping[str, Any]) -> Extraction:
    """Decode Attachment.data by its contentType (text/*, HTML, RTF, PDF), within the size limits."""
    if not isinstance(attachment, Mapping):
        return Extraction(None, "not an attachment")
    media, params = _media_type(attachment.get("contentType"))
    if not (media.startswith("text/") or media in ("application/rtf", "application/pdf", "application/xhtml+xml")):
        return Extraction(None, "unsupported content type")
    raw = _decode_base64(attachment.get("data"))
    if isinstance(raw, Extraction):
        return raw
    if media in ("text/html", "application/xhtml+xml"):
        return Extraction(html_to_text(_plain(raw, params.get("charset"))))
    if media in ("text/rtf", "application/rtf"):
        return _rtf(raw)
    if media == "application/pdf":
        return _pdf(raw)
    return Extraction(_plain(raw, params.get("charset")))


def attachment_text(attachment: Mapping[str, Any]) -> str | None:
    """The readable text of an Attachment's inline data, or None when there is none or it can't be read."""
    return extract_attachment(attachment).text


def resource_texts(resource: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every human-readable text in a resource as (element path, text): narrative, prose fields, attachments."""
    out: list[tuple[str, str]] = []
    if isinstance(resource, Mapping):
        _walk(resource, "", out, 0)
    return out


def _walk(node: Mapping[str, Any], path: str, out: list[tuple[str, str]], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if "div" in node and isinstance(node["div"], str):  # Narrative (FHIR R4 §2.4.0)
        text = html_to_text(node["div"])
        if text:
            out.append((f"{path}.div" if path else "div", text))
        return
    if "data" in node and isinstance(node.get("data"), str) and "contentType" in node:  # Attachment
        decoded = attachment_text(node)
        if decoded:
            out.append((path or "attachment", decoded))
    if isinstance(node.get("coding"), list):  # CodeableConcept: its text, then displays that add something
        _concept_texts(node, path, out)
        return
    for key, value in node.items():
        if key in _SKIP_KEYS or key.startswith("_"):
            continue
        here = f"{path}.{key}" if path else key
        if isinstance(value, str):
            if (key in _TEXT_KEYS or key.endswith(("String", "Markdown"))) and value.strip():
                out.append((here, value))
        elif isinstance(value, Mapping):
            _walk(value, here, out, depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    _walk(item, f"{here}[{index}]", out, depth + 1)
                elif isinstance(item, str) and key in _TEXT_KEYS and item.strip():
                    out.append((f"{here}[{index}]", item))


def _concept_texts(node: Mapping[str, Any], path: str, out: list[tuple[str, str]]) -> None:
    """Texts of a CodeableConcept without repeats: a coding display equal to the text adds nothing to grep."""
    seen: set[str] = set()
    text = node.get("text")
    if isinstance(text, str) and text.strip():
        out.append((f"{path}.text" if path else "text", text))
        seen.add(text)
    for index, coding in enumerate(node["coding"]):
        display = coding.get("display") if isinstance(coding, Mapping) else None
        if isinstance(display, str) and display.strip() and display not in seen:
            seen.add(display)
            out.append((f"{path}.coding[{index}].display" if path else f"coding[{index}].display", display))
