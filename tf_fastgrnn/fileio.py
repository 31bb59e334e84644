"""Writing artifacts so that a killed run never leaves a half-written file.

Every writer goes to a temporary name in the destination folder and renames it into
place with ``os.replace`` (atomic on POSIX): a reader sees the old file or the new one,
never a truncated one.
"""

import contextlib
import json
import os
import pathlib
import tempfile

__all__ = ["atomic_path", "permission_bits", "write_bytes", "write_json", "write_text"]


def permission_bits(directory=False):
  """The mode a new file (0666) or folder (0777) gets under the process umask.

  ``tempfile`` creates 0600 files and 0700 folders whatever the umask; what we rename
  into place gets the ordinary mode instead, so other users see results as they would
  see any file the user wrote.
  """
  umask = os.umask(0)
  os.umask(umask)
  return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(path, suffix=None):
  """Yields a temporary path beside ``path``; renames it to ``path`` on success.

  Args:
    path: the final file.
    suffix: the temporary file's suffix (some writers, e.g. Keras, insist on
      ``.keras``); default: ``path``'s own suffix.

  Yields:
    A ``pathlib.Path`` to write to. On an exception it is removed and ``path`` untouched.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                             suffix=path.suffix if suffix is None else suffix)
  os.close(fd)
  tmp = pathlib.Path(tmp)
  try:
    yield tmp
    if tmp.is_file():
      os.chmod(tmp, permission_bits())
    os.replace(tmp, path)
  except OSError as e:
    if e.errno is None or e.filename is not None:
      raise
    # A write that fails (a full disk: ENOSPC) names no file; name the one being made.
    raise OSError(e.errno, e.strerror or str(e), str(path)) from e
  finally:
    if tmp.exists():
      tmp.unlink()


def write_bytes(path, data):
  """Writes ``data`` to ``path`` atomically; returns the path."""
  with atomic_path(path) as tmp:
    tmp.write_bytes(data)
  return pathlib.Path(path)


def write_text(path, text):
  """Writes ``text`` (UTF-8) to ``path`` atomically; returns the path."""
  return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
  """Writes ``obj`` as indented JSON to ``path`` atomically; returns the path."""
  return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value):
  """NumPy scalars and arrays, paths: the types our reports hold besides plain ones."""
  if hasattr(value, "tolist"):
    return value.tolist()
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  raise TypeError(f"not JSON serializable: {type(value).__name__}")


PLOT_HINT = ("plots not drawn: matplotlib is not installed "
             "(pip install 'tf_fastgrnn[plot]')")


def pyplot(required=None):
  """``matplotlib.pyplot`` on the file-only Agg backend (no display needed), or None
  where matplotlib (the ``plot`` extra) is not installed: the product's reports then
  say ``PLOT_HINT`` instead of drawing. ``required``: what needs the plot; then a
  missing matplotlib raises ``ModuleNotFoundError`` in one line naming it."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
  except ModuleNotFoundError:
    if required:
      raise ModuleNotFoundError(f"{required} needs matplotlib: pip install "
                                "'tf_fastgrnn[plot]'") from None
    return None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def save_figure(fig, path):
  """Lays out ``fig``, writes it as PNG to ``path`` atomically and closes it."""
  fig.tight_layout()
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=110, format="png")
  pyplot().close(fig)
  return pathlib.Path(path)
