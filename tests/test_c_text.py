"""Strings written into generated C/C++: compiled by the system compiler, read back byte
for byte; a comment cannot end early, splice a line or hide code."""

import doctest
import shutil
import subprocess

import pytest

from tf_fastgrnn import c_text

# Each would end a literal or a comment, splice a line, form a trigraph, or be misread
# after an escape if written into C as it is.
HOSTILE = [
    'a"}; int injected = 42; static const char* x[] = {"b',
    'quote " inside', "back\\slash", "ends with a backslash\\", "new\nline", "cr\rlf",
    "tab\there", "??=", "??/", "??)??(??<??>??!??'??-", '"??/"', "a\\\nb", "\\x41\\0",
    "caf\u00e9", "\u00e9123", "\u00e9abc", "\u65e5\u672c\u8a9e", "\U0001F600 emoji",
    "\x7f\x01\x1b[31m", "*/ int y; /*", "// line", "/* open", "%s%n%d", "' single",
    "", " ", "\u2028 line separator", "end\n",
]


def _compiler(name):
  path = shutil.which(name)
  if path is None:
    pytest.skip(f"needs {name} on PATH")
  return path


def _build_and_run(tmp_path, compiler, source, suffix, std):
  src = tmp_path / f"prog{suffix}"
  src.write_text(source, encoding="ascii")  # generated text must be pure ASCII
  exe = tmp_path / f"prog{suffix}.exe"
  build = subprocess.run([compiler, std, "-pedantic", "-Wall", "-Wextra", "-Werror",
                          "-Wtrigraphs", "-Wcomment", str(src), "-o", str(exe)],
                         capture_output=True, text=True)
  assert build.returncode == 0, build.stderr
  return subprocess.run([str(exe)], capture_output=True, check=True).stdout


@pytest.mark.parametrize("compiler,suffix,std", [("gcc", ".c", "-std=c99"),
                                                 ("g++", ".cc", "-std=c++11"),
                                                 ("g++", ".cc", "-std=c++17")])
def test_string_literals_compile_to_the_exact_bytes(tmp_path, compiler, suffix, std):
  # C99 and C++11 are ISO modes: trigraphs are on there ("??/" would be a backslash).
  cc = _compiler(compiler)
  items = ",\n".join(f"  {c_text.c_string_literal(s)}" for s in HOSTILE)
  source = ("#include <stdio.h>\n#include <string.h>\n"
            f"static const char *const kItems[] = {{\n{items}\n}};\n"
            "int main(void) {\n  size_t i;\n"
            "  for (i = 0; i < sizeof kItems / sizeof kItems[0]; ++i) {\n"
            "    printf(\"%u:\", (unsigned)strlen(kItems[i]));\n"
            "    fwrite(kItems[i], 1, strlen(kItems[i]), stdout);\n  }\n  return 0;\n}\n")
  out = _build_and_run(tmp_path, cc, source, suffix, std)
  want = b"".join(b"%d:%s" % (len(s.encode()), s.encode()) for s in HOSTILE)
  assert out == want


@pytest.mark.parametrize("compiler,suffix,std", [("gcc", ".c", "-std=c99"),
                                                 ("g++", ".cc", "-std=c++11")])
def test_comments_hold_any_text_and_nothing_runs(tmp_path, compiler, suffix, std):
  # A comment that ended early, split or spliced a line would add to n, or drop an
  # increment, or not compile.
  cc = _compiler(compiler)
  hostile = HOSTILE + ["x\nn += 100;", "x */ n += 100; /* y", "ends\\", "ends??/",
                       "x \u2028 n += 100;"]
  body = "".join(f"  // {c_text.c_comment_text(s)}\n  n += 1;\n"
                 f"  /* {c_text.c_comment_text(s)} */ n += 1;\n" for s in hostile)
  source = f"#include <stdio.h>\nint main(void) {{\n  int n = 0;\n{body}" \
           '  printf("%d", n);\n  return 0;\n}\n'
  assert _build_and_run(tmp_path, cc, source, suffix, std) == str(2 * len(hostile)).encode()


def test_escapes_are_octal_of_three_digits():
  assert c_text.c_string_literal("\u00e91") == '"\\303\\2511"'  # '1' is not an escape digit
  assert c_text.c_string_literal('"\\?') == '"\\"\\\\\\?"'
  assert c_text.c_string_literal("\n\0x"[:1]) == '"\\012"'
  assert c_text.c_comment_text("a*/b?\\") == "a\\052/b\\077\\134"


def test_unwritable_strings_are_refused():
  with pytest.raises(ValueError, match=r"label 2 'a\\x00b' holds a NUL character"):
    c_text.c_string_literal("a\0b", "label 2")
  with pytest.raises(ValueError, match="lone surrogate"):
    c_text.c_string_literal("a\ud800", "label 0")
  with pytest.raises(ValueError, match="lone surrogate"):
    c_text.c_comment_text("\udfff")
  with pytest.raises(ValueError, match="must be a str, got bytes"):
    c_text.c_string_literal(b"abc")


def test_docstring_examples():
  result = doctest.testmod(c_text)
  assert result.attempted == 2 and result.failed == 0
