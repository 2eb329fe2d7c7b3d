"""pandas' row hashes (pd.util.hash_array, hash_pandas_object) computed with numpy alone, over pyarrow
columns: ingestion needs no pandas, and the stored hashes stay the released ones (tests compare them
with pandas' on every kind of value).

Text is hashed by SipHash-2-4 of its UTF-8 bytes (pandas' hash_object_array), vectorised: the strings'
8-byte words are read straight from the Arrow data buffer, a block of rows at a time so that the working
arrays stay in the CPU's cache. Every hash then goes through pandas' 64-bit mixing step.

It also holds the conversions between pyarrow and numpy that ingestion needs, done from the Arrow
buffers: pyarrow's own (pa.array, to_numpy, a Python scalar given to a compute function) import pandas.
"""

import numpy as np

PANDAS_KEY = b"0123456789123456"  # pandas' default hash_key
MISSING = np.iinfo(np.uint64).max  # a missing value, as pandas' categorised hashing has it
BLOCK_ROWS = 32_768  # rows hashed at a time: five such uint64 arrays fit a core's cache
_U = np.uint64
_INIT = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)


def combine(hashed: list) -> np.ndarray:
    """One hash per row of these column hashes: pandas' combine_hash_arrays (CPython's tuple hash)."""
    out = np.full(len(hashed[0]), 0x345678, dtype=np.uint64)
    multiplier = _U(1000003)
    for place, column in enumerate(hashed):
        out ^= column
        out *= multiplier
        multiplier += _U(82520 + 2 * (len(hashed) - place))
    return out + _U(97531)


def numbers(values: np.ndarray) -> np.ndarray:
    """pd.util.hash_array of a 64-bit numeric array (floats: -0.0 as 0.0, and every NaN alike)."""
    bits = values.view(np.uint64).copy()
    if values.dtype.kind == "f":
        bits[np.isnan(values)] = np.array(np.nan).view(np.uint64)
        bits[bits == np.array(-0.0).view(np.uint64)] = 0
    return _mix(bits)


def text(array, key: bytes = PANDAS_KEY, missing_as_empty: bool = False) -> np.ndarray:
    """pd.util.hash_array of a pyarrow string column's values as Python str (categorize=False); a
    missing value hashes as MISSING, or as "" with `missing_as_empty`."""
    import pyarrow as pa

    array = _array(array).cast(pa.string())
    out = _mix(siphash(array, key))
    if array.null_count and not missing_as_empty:
        out[missing(array)] = MISSING
    return out


def to_numpy(column) -> np.ndarray:
    """A numeric or boolean pyarrow column as a numpy array: float64 (NaN where missing) when it has missing
    values or is not an integer or boolean column; int64 or bool otherwise. Read-only when nothing is missing."""
    import pyarrow as pa

    array = _array(column)
    if pa.types.is_boolean(array.type) and not array.null_count:
        return _bits(array.buffers()[1], array.offset, len(array))
    if pa.types.is_integer(array.type) and not array.null_count:
        array, dtype = array.cast(pa.int64()), np.int64
    else:
        array, dtype = array.cast(pa.float64()), np.float64
    if not len(array):
        return np.zeros(0, dtype=dtype)
    values = np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=8 * array.offset)
    if array.null_count:
        values = values.copy()
        values[missing(array)] = np.nan
    return values


def missing(column) -> np.ndarray:
    """True where a pyarrow column's value is missing (null, or NaN in a float column)."""
    import pyarrow.compute as pc

    nulls = _array(pc.is_null(column, nan_is_null=True))
    return _bits(nulls.buffers()[1], nulls.offset, len(nulls))


def mask(values: np.ndarray):
    """A numpy boolean array as a pyarrow one (for Table.filter)."""
    import pyarrow as pa

    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(values, bitorder="little"))])


def _array(column):
    """One pyarrow Array of a column (combine_chunks of no chunks would import pandas)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks else pa.nulls(0, column.type)
    return column


def _bits(buffer, offset: int, length: int) -> np.ndarray:
    if not length:
        return np.zeros(0, dtype=bool)
    return np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), count=offset + length, bitorder="little")[offset:].astype(bool)


def siphash(array, key: bytes) -> np.ndarray:
    """SipHash-2-4 (key: 16 bytes) of each value of a pyarrow string array; a null hashes as ""."""
    k0, k1 = (int(k) for k in np.frombuffer(key, dtype="<u8"))
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32, count=len(array) + 1, offset=4 * array.offset)
    data, first, end = array.buffers()[2], int(offsets[0]), int(offsets[-1])  # this array's bytes (of a slice)
    padded = np.zeros(end - first + 8, dtype=np.uint8)  # a word may start at the last byte
    if end > first:
        padded[:end - first] = np.frombuffer(data, dtype=np.uint8)[first:end]
    words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))  # words[i]: 8 bytes from i
    starts = offsets[:-1].astype(np.int64) - first
    lengths = (offsets[1:] - offsets[:-1]).astype(np.int64)
    if array.null_count:
        lengths[missing(array)] = 0
    blocks = lengths >> 3
    order = np.argsort(blocks, kind="stable") if len(blocks) and blocks.min() != blocks.max() else None
    if order is not None:
        starts, lengths, blocks = starts[order], lengths[order], blocks[order]
    out = np.empty(len(array), dtype=np.uint64)
    work = np.empty((5, BLOCK_ROWS), dtype=np.uint64)
    initial = [_U(v ^ k) for v, k in zip(_INIT, (k0, k1, k0, k1), strict=True)]
    ends = [*(np.flatnonzero(np.diff(blocks)) + 1), len(blocks)]
    for first, end in zip([0, *ends[:-1]], ends, strict=True):  # rows with the same number of whole words
        full = int(blocks[first]) if end > first else 0
        for lo in range(first, end, BLOCK_ROWS):
            hi = min(lo + BLOCK_ROWS, end)
            v0, v1, v2, v3, scratch = (row[:hi - lo] for row in work)
            for v, value in zip((v0, v1, v2, v3), initial, strict=True):
                v.fill(value)
            start, length = starts[lo:hi], lengths[lo:hi]
            for word in range(full + 1):
                m = words[start + 8 * word]
                if word == full:  # the last bytes, then the length in the top byte
                    m &= (_U(1) << ((length & 7).astype(np.uint64) << _U(3))) - _U(1)
                    m |= length.astype(np.uint64) << _U(56)
                v3 ^= m
                _rounds(v0, v1, v2, v3, scratch, 2)
                v0 ^= m
            v2 ^= _U(0xFF)
            _rounds(v0, v1, v2, v3, scratch, 4)
            v0 ^= v1
            v0 ^= v2
            v0 ^= v3
            out[lo:hi] = v0
    if order is not None:
        out[order] = out.copy()
    return out


def _rounds(v0, v1, v2, v3, scratch, count: int) -> None:
    """`count` SipRounds on the state arrays, in place."""
    for _ in range(count):
        v0 += v1
        _rotate(v1, 13, scratch)
        v1 ^= v0
        _rotate(v0, 32, scratch)
        v2 += v3
        _rotate(v3, 16, scratch)
        v3 ^= v2
        v0 += v3
        _rotate(v3, 21, scratch)
        v3 ^= v0
        v2 += v1
        _rotate(v1, 17, scratch)
        v1 ^= v2
        _rotate(v2, 32, scratch)


def _rotate(v, bits: int, scratch) -> None:
    np.left_shift(v, _U(bits), out=scratch)
    v >>= _U(64 - bits)
    v |= scratch


def _mix(bits: np.ndarray) -> np.ndarray:
    """pandas' final step of hash_array: spread the 64 bits (splitmix64's finaliser), in place."""
    bits ^= bits >> _U(30)
    bits *= _U(0xBF58476D1CE4E5B9)
    bits ^= bits >> _U(27)
    bits *= _U(0x94D049BB133111EB)
    bits ^= bits >> _U(31)
    return bits
