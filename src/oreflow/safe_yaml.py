"""Bounded YAML loading for text oreflow did not write (scenario files, the web API).

`yaml.safe_load` builds no Python objects, but it still expands aliases: a 411-byte file of
nested anchors (the "billion laughs") becomes hundreds of megabytes of lists, and deeply
nested brackets recurse until Python gives up. `load` here refuses, before any expansion:

- input above `MAX_BYTES` (checked on the encoded size, before parsing);
- anchors and aliases (`&a`, `*a`, and the `<<` merge key that needs them): a scenario never
  needs them, so there is nothing to expand;
- nesting deeper than `MAX_DEPTH` mappings or sequences (checked while composing, so a
  deep document stops at the first node too deep, in time proportional to what was read).

Every error is a `YamlError` naming the label (file or field), the line and column, and at
most `EXCERPT_CHARS` characters of the offending input, never the input itself.
"""

from __future__ import annotations

import yaml
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent

MAX_BYTES = 256 * 1024
"""Largest YAML text accepted (the built-in scenarios are under 3 kB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences accepted (scenarios need 4)."""
EXCERPT_CHARS = 80
"""At most this much of the input appears in an error message."""


class YamlError(ValueError):
    """YAML text refused: too large, too deep, uses anchors/aliases, or does not parse."""


def excerpt(text: object, limit: int = EXCERPT_CHARS) -> str:
    """`repr` of a value cut to about `limit` characters (for error messages)."""
    s = text if isinstance(text, str) else repr(text)
    if len(s) > limit:
        s = s[:limit] + f"... ({len(s):,} characters)"
    return repr(s) if isinstance(text, str) else s


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"


def _line_excerpt(text: str, mark) -> str:
    if mark is None:
        return ""
    start = mark.index - mark.column
    end = text.find("\n", mark.index)
    line = text[start:end if end >= 0 else len(text)]
    return f" near {excerpt(line.strip())}" if line.strip() else ""


class BoundedSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases and caps nesting depth."""

    max_depth = MAX_DEPTH

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias" if isinstance(event, AliasEvent) else "anchor"
            name = excerpt(event.anchor, 40)
            raise YamlError(f"{_where(event.start_mark)}: YAML {kind} {name} is not allowed "
                            "(anchors, aliases and merge keys are refused: write the values "
                            "out)")
        nested = isinstance(event, MappingStartEvent | SequenceStartEvent)
        if nested:
            self._depth += 1
            if self._depth > self.max_depth:
                raise YamlError(f"{_where(event.start_mark)}: nesting deeper than "
                                f"{self.max_depth} levels is not allowed")
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


def load(text: str | bytes, label: str = "<yaml>", max_bytes: int = MAX_BYTES):
    """Parse one YAML document with the limits above; raises YamlError('label: ...')."""
    if isinstance(text, bytes):
        size = len(text)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise YamlError(f"{label}: not UTF-8 text (byte {e.start})") from None
    else:
        size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise YamlError(f"{label}: {size:,} bytes of YAML; the limit is {max_bytes:,}")
    loader = None
    try:
        loader = BoundedSafeLoader(text)  # checks the characters already
        return loader.get_single_data()
    except YamlError as e:
        raise YamlError(f"{label}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "invalid YAML")[:200]
        raise YamlError(f"{label}: not valid YAML: {problem} at {_where(mark)}"
                        f"{_line_excerpt(text, mark)}") from None
    except yaml.reader.ReaderError as e:
        raise YamlError(f"{label}: not valid YAML: character #x{e.character:04x} at position "
                        f"{e.position} is not allowed ({e.reason})") from None
    except yaml.YAMLError as e:
        raise YamlError(f"{label}: not valid YAML: {excerpt(str(e), 200)}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        # e.g. an integer of more digits than Python converts, or an unhashable key
        raise YamlError(f"{label}: not usable YAML: {type(e).__name__}: "
                        f"{excerpt(str(e), 200)}") from None
    finally:
        if loader is not None:
            loader.dispose()
