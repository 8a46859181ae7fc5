"""Whether a report.html (container/facetrain/templates/report.html.j2) names one of the people.

The page writes identity names and photo keys only as whole table cells (`<td>`): the per-identity table
(identity, nearest identity), closest pairs, suspected mislabels (photo, filed under, closest identity)
and rejected files (file); and in a figure (the PCA legend draws the names as pixels: no parser reads
them, but every identity drawn is in the per-identity table). So the page, parsed with html.parser (entities
decoded), names a person when:

- a text node, stripped, EQUALS a name, outside header cells and headings (`<th>`, `<caption>`,
  `<h1>`-`<h6>`, `<title>`, and `<style>`/`<script>`): the template writes only its own labels there
  (`identity`, `used`, `min`, `max`, `mean`...) and the settings' names, never a person's. A person whose
  folder is named like a label (`max`) is thus not found in a header cell, which is right: no report puts
  a person there;
- such a text node is a photo key of theirs (Traces.is_photo_key), or any text node or attribute value
  mentions one (Traces.mentions: `ann/img1.jpg`, `ann/`, an s3:// URI; as written and URL-decoded), so
  the header `photos/s` is not a photo of a person called `photos`.

Left as a known risk: a name equal to a value the page writes alone in a `<td>` (`genuine`, `impostor`,
a rejection reason such as `no_face`, a setting's value such as `cpu`) finds every report. A page is
never rewritten (its figures draw every photo): one that names them is deleted.
"""

from __future__ import annotations

import urllib.parse
from html.parser import HTMLParser

from .erasure_traces import Traces

_LABELS = frozenset({"th", "caption", "h1", "h2", "h3", "h4", "h5", "h6", "title", "style", "script"})


class _ReportReader(HTMLParser):
    def __init__(self, traces: Traces) -> None:
        super().__init__(convert_charrefs=True)
        self.traces = traces
        self.open_labels: list[str] = []
        self.found = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _LABELS:
            self.open_labels.append(tag)
        for _, value in attrs:
            if value is not None and self._holds_photo_key(value):
                self.found = True

    def _holds_photo_key(self, value: str) -> bool:
        """The value, or the value URL-decoded (an href's `ann%20lee/1.jpg`), holds a photo key of theirs."""
        return any(
            self.traces.is_photo_key(form) or self.traces.mentions(form)
            for form in {value, urllib.parse.unquote(value)}
        )

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open_labels:  # an unclosed label ends with its own end tag, whatever is inside
            del self.open_labels[len(self.open_labels) - 1 - self.open_labels[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if not text:
            return
        if not self.open_labels and (self.traces.is_name(text) or self.traces.is_photo_key(text)):
            self.found = True  # a cell that is a name or a photo key (`ann/scan`: no file extension)
        elif self.traces.mentions(text) or self.traces.mentions(urllib.parse.unquote(text)):
            self.found = True


def report_names_them(body: bytes, traces: Traces) -> bool:
    """The rule in the module docstring. A body that is not UTF-8: UnicodeDecodeError (a ValueError)."""
    reader = _ReportReader(traces)
    reader.feed(body.decode("utf-8"))
    reader.close()
    return reader.found
