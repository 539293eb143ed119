"""Atomic file writes: a temporary file in the same directory, then a rename."""

import contextlib
import csv
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="w"):
    """Open a temporary file next to `path`; rename it to `path` when the block succeeds.

    On any error the temporary file is removed, so `path` is either the old
    file (or absent) or the complete new one, never half-written.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "report.txt")
    >>> with atomic_write(path) as file:
    ...     _ = file.write("done")
    >>> open(path).read()
    'done'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".partial-", dir=directory)
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"newline": ""})) as file:
            yield file
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; a normal file's mode
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def staging_directory(prefix, parent):
    """A new empty directory in `parent` to fill and then rename into place, with a
    normal directory's mode (mkdtemp makes it 0700; servers and other users must read it).

    Example:
    >>> import os, stat, tempfile
    >>> folder = staging_directory(".export-", tempfile.mkdtemp())
    >>> stat.S_IMODE(os.stat(folder).st_mode) == 0o777 & ~_umask()
    True
    """
    staging = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(staging, 0o777 & ~_umask())
    return staging


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_csv(path, columns):
    """Write equal-length columns given as {name: values} atomically, as CSV of floats."""
    lines = [",".join(columns)]
    lines += [",".join(repr(float(v)) for v in row) for row in zip(*columns.values())]
    with atomic_write(path) as file:
        file.write("\n".join(lines) + "\n")


def read_csv(path):
    """The {column: [float values]} dict of a CSV written by `write_csv`."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else [])}
