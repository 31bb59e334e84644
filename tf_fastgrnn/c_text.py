r"""Text that goes into generated C and C++ sources: string literals and comments.

Every string the package writes into a ``.c``, ``.cc`` or ``.h`` file that did not come
from the package itself (class labels from an npz, a front end's name, a model's
origin) goes through one of these two functions, so no such string can end a literal or
a comment early, splice a line, or form a trigraph: whatever it holds, the file
compiles to exactly that text and nothing else.

  >>> print(c_string_literal('a"}; int x = 42; //??/'))
  "a\"}; int x = 42; //\?\?/"
  >>> print(c_comment_text("runs/x */ int y; /* caf\u00e9\\\n"))
  runs/x \052/ int y; /\052 caf\303\251\134\012
"""

__all__ = ["c_comment_text", "c_string_literal"]

# Printable ASCII a literal keeps as it is; everything else is escaped.
_PRINTABLE = frozenset(range(0x20, 0x7F))
_LITERAL_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"', ord("?"): "\\?"}
# In a comment: no backslash (a line splice at the line's end), no '?' (trigraphs such as
# '??/', a backslash where trigraphs are on: gcc -std=c99), no '*' (so neither '*/' nor
# '/*'); each becomes a 3-digit octal escape, as does every other byte.
_COMMENT_ESCAPED = frozenset(b"\\?*")


def _utf8(text, what):
  if not isinstance(text, str):
    raise ValueError(f"{what} must be a str, got {type(text).__name__} {text!r}")
  try:
    return text.encode("utf-8")
  except UnicodeEncodeError as e:
    raise ValueError(f"{what} {text!r} is not valid Unicode (a lone surrogate at "
                     f"{e.start}): it has no UTF-8 bytes to write into C") from None


def _octal(byte):
  # Always 3 digits: an octal escape ends after at most 3, so the next character can
  # never be read as part of it (a hex escape '\x..' has no such limit).
  return f"\\{byte:03o}"


def c_string_literal(text, what="string"):
  """A C/C++ string literal (quotes included) whose bytes are ``text`` in UTF-8.

  Printable ASCII stays as it is except ``\\``, ``"`` and ``?`` (escaped: ``??=`` and its
  kin are trigraphs in C99 and C++11); every other byte, control characters and each
  byte of a non-ASCII character, is a 3-digit octal escape. Valid in C89 to C23 and
  C++98 to C++23, whatever the source and execution character sets agree on for ASCII.

  Args:
    text: any ``str`` without NUL (a ``const char*`` ends at the first NUL).
    what: how the error message names the value (e.g. ``"label 3"``).

  Raises:
    ValueError: ``text`` is not a str, holds NUL, or is not valid Unicode.
  """
  data = _utf8(text, what)
  if 0 in data:
    raise ValueError(f"{what} {text!r} holds a NUL character: a C string would end there")
  return '"' + "".join(_LITERAL_ESCAPES.get(b, chr(b) if b in _PRINTABLE else _octal(b))
                       for b in data) + '"'


def c_comment_text(text, what="text"):
  """``text`` made safe inside a ``//`` or ``/* */`` comment: one line, no ``*/`` nor
  ``/*``, no backslash or trigraph, printable ASCII kept, anything else (and ``\\``,
  ``?``, ``*``) as a 3-digit octal escape of its UTF-8 bytes, for the reader.

  Raises:
    ValueError: ``text`` is not a str or not valid Unicode.
  """
  return "".join(chr(b) if b in _PRINTABLE and b not in _COMMENT_ESCAPED else _octal(b)
                 for b in _utf8(text, what))
