"""A bounded, allow-list unpickler for untrusted pickles that only need to give data back.

:class:`BoundedUnpickler` is Python's own pure-Python unpickler (``pickle._Unpickler``) with
its opcodes guarded; the C unpickler cannot be guarded (its memo is an array sized by the
largest index a pickle names, so five bytes ask it for tens of GiB). What it enforces:

* **globals**: ``find_class`` returns only what :meth:`BoundedUnpickler.allowed` lists
  (extension codes, which bypass it through a process-wide cache, are refused).
  Allowed objects are either *callables* (rebuild functions that check their arguments, plain
  containers, inert records) or *tokens* (``torch.Tensor``, dtypes: may appear as arguments,
  are never called). ``REDUCE`` calls only callables; ``NEWOBJ`` builds only the classes
  in :attr:`BoundedUnpickler.newobj_classes`; ``INST``/``OBJ`` (protocol 0/1 instantiation)
  and persistent ids are refused;
* **BUILD** (``__setstate__`` / attribute assignment) only on instances of
  :attr:`BoundedUnpickler.build_types`, never on a class or a function (which would let a
  pickle rewrite this process's code), and without ``__setstate__`` only a dict of plain
  attribute names;
* **memo**: at most :data:`MAX_MEMO` entries and indices;
* **nesting**: tuples deeper than :data:`MAX_DEPTH` are refused as they are built (hashing a
  200,000-deep tuple, as a dict key does, overflows the C stack); the finished object is
  walked once (:func:`check_structure`) with a bound on depth and on the objects visited,
  counted once per path, so shared sub-structures cannot multiply the work of later walks;
* **bytes**: the whole file is read into memory first (a length field cannot make the reader
  allocate more than the file), and :class:`StorageBudget` keeps the tensor storages built
  within the file's size;
* **tensors**: :func:`rebuild_tensor` checks sizes and strides against the storage present
  (a stride-0 view claiming 10^12 elements of a 4-byte storage is refused).

numpy scalars (``numpy.float64(...)`` in EDM's recorded constructor arguments) are rebuilt by
:func:`numpy_scalar` from a plain numeric dtype and exactly its number of bytes.
"""

from __future__ import annotations

import io
import math
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

#: memo entries (and largest memo index) a pickle may use
MAX_MEMO = 1_000_000
#: deepest nesting of containers and records
MAX_DEPTH = 100
#: objects visited (once per path) by the structure check
MAX_NODES = 1_000_000
#: dimensions of a tensor
MAX_DIMS = 32


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asks for something the bounded unpickler does not do (the message says what)."""


# ---- numpy scalars and dtypes, as data --------------------------------------------------------
#: plain numeric / bool dtypes as numpy's pickles name them (``dtype.__reduce__``)
NUMPY_DTYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"})
_BYTE_ORDERS = frozenset({"<", ">", "|", "="})


class NumpyDType:
    """``numpy.dtype`` as a pickle names it, kept as data: one of :data:`NUMPY_DTYPES` and the
    byte order its ``__setstate__`` tuple gives (the only state a plain dtype has)."""

    __slots__ = ("byteorder", "name")

    def __init__(self, name: str, byteorder: str = "=") -> None:
        self.name, self.byteorder = name, byteorder

    def __setstate__(self, state: Any) -> None:
        # numpy writes (3, byteorder, subarray, names, fields, elsize, alignment, flags);
        # a plain dtype has no subarray, names or fields, and -1 / -1 / 0 for the rest
        if not (type(state) is tuple and len(state) == 8 and state[0] == 3 and state[1] in _BYTE_ORDERS
                and state[2:] == (None, None, None, -1, -1, 0)):
            raise RefusedPickle(f"numpy.dtype {self.name!r} with a state that is not a plain dtype's")
        self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        dt = np.dtype(self.name)
        return dt.newbyteorder(self.byteorder) if self.byteorder in "<>" else dt

    def __repr__(self) -> str:
        return f"dtype({self.to_numpy().name!r})"


def numpy_dtype(obj: Any, align: Any = False, copy: Any = True) -> NumpyDType:
    """Stand-in for ``numpy.dtype(obj, align, copy)`` in a pickle: plain numeric dtypes only."""
    if type(obj) is not str or obj not in NUMPY_DTYPES:
        raise RefusedPickle(f"numpy.dtype of {_short(obj)} (only plain numeric or bool dtypes are read)")
    if type(align) is not bool or type(copy) is not bool:
        raise RefusedPickle("numpy.dtype with flags that are not booleans")
    return NumpyDType(obj)


def numpy_scalar(dtype: Any, data: Any = None) -> np.generic:
    """Stand-in for ``numpy.core.multiarray.scalar(dtype, bytes)``: the numpy scalar of a plain
    dtype from exactly ``dtype.itemsize`` bytes, decoded with ``numpy.frombuffer``."""
    if type(dtype) is not NumpyDType:
        raise RefusedPickle(f"numpy scalar of {_short(dtype)} (not a plain numeric dtype)")
    if type(data) is not bytes:
        raise RefusedPickle(f"numpy scalar from {type(data).__name__}, not bytes")
    dt = dtype.to_numpy()
    if len(data) != dt.itemsize:
        raise RefusedPickle(f"numpy {dt.name} scalar from {len(data)} bytes (it has {dt.itemsize})")
    return np.frombuffer(data, dtype=dt)[0]


# ---- tensors ------------------------------------------------------------------------------------
class StorageBudget:
    """Storage bytes one pickle may build in all: the size of its file (each storage is stored
    in it once), so reusing one stored blob many times cannot multiply memory."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = int(limit), 0

    def load(self, b: Any) -> Any:
        """``torch.storage._load_from_bytes``: a storage from the bytes ``torch.save`` wrote,
        read with ``torch.load(weights_only=True)`` after checking its declared sizes."""
        if type(b) is not bytes:
            raise RefusedPickle(f"a storage from {type(b).__name__}, not bytes")
        self.used += len(b)
        if self.used > self.limit:
            raise RefusedPickle(f"the storages hold more bytes ({self.used}) than the file ({self.limit})")
        declared = declared_storage_bytes(b)
        if declared > len(b):
            raise RefusedPickle(f"a storage declares {declared} bytes but only {len(b)} are stored")
        storage = torch.load(io.BytesIO(b), weights_only=True)
        if not isinstance(storage, torch.storage.TypedStorage) or storage._untyped_storage.nbytes() > len(b):
            raise RefusedPickle("a storage blob that is not one storage of its stored size")
        return storage


def declared_storage_bytes(b: bytes) -> int:
    """Bytes the storages in a legacy ``torch.save`` blob declare (what ``torch.load`` would
    allocate before reading them): the magic number, protocol and system-info pickles are
    skipped, the main pickle's storage records summed."""
    reader = _StorageHeader(io.BytesIO(b))
    for _ in range(3):  # magic number, protocol version, system information: plain values
        _bounded_load(reader)
    _bounded_load(reader)
    return sum(reader.numels)


def _bounded_load(reader: BoundedUnpickler) -> Any:
    reader.memo = {}
    return reader.load()


def _int_tuple(x: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)) or len(x) > MAX_DIMS or not all(type(v) is int for v in x):
        raise RefusedPickle(f"tensor {what} {_short(x)} is not a tuple of at most {MAX_DIMS} integers")
    if any(v < 0 for v in x):
        raise RefusedPickle(f"tensor {what} {tuple(x)} has a negative entry")
    return tuple(x)


def _empty(x: Any) -> bool:
    return x is None or (isinstance(x, dict) and not x)


def rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                   backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` after checking that the view lies inside the storage
    and names no more elements than it holds: offset + Σ (size_i - 1) stride_i < numel(storage)
    and Π size_i <= numel(storage). No hooks, no metadata."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise RefusedPickle(f"a tensor on {type(storage).__name__}, not a storage")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise RefusedPickle(f"tensor size {size} and stride {stride} differ in length")
    if type(storage_offset) is not int or storage_offset < 0:
        raise RefusedPickle(f"tensor storage offset {_short(storage_offset)}")
    if type(requires_grad) is not bool or not _empty(backward_hooks) or not _empty(metadata):
        raise RefusedPickle("a tensor with hooks or metadata")
    available = storage._untyped_storage.nbytes() // torch._utils._element_size(storage.dtype)
    numel = math.prod(size)
    if numel > 0:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= available or numel > available:
            raise RefusedPickle(f"a tensor of size {size} (stride {stride}, offset {storage_offset}) claims "
                                f"{numel} elements of a storage that holds {available}")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, OrderedDict())


def rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None,
                      state: Any = None) -> torch.nn.Parameter:
    """``torch._utils._rebuild_parameter`` (and ``_with_state``, empty state only)."""
    if not isinstance(data, torch.Tensor) or type(requires_grad) is not bool:
        raise RefusedPickle(f"a parameter of {type(data).__name__}, not a tensor")
    if not _empty(backward_hooks) or not _empty(state):
        raise RefusedPickle("a parameter with hooks or extra state")
    return torch.nn.Parameter(data, requires_grad)


def rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    """``torch._tensor._rebuild_from_type_v2`` for plain tensors and parameters only."""
    if func is not rebuild_tensor or new_type not in (torch.Tensor, torch.nn.Parameter):
        raise RefusedPickle("a tensor rebuilt by another function or as another type")
    if type(args) is not tuple or not _empty(state):
        raise RefusedPickle("a tensor rebuilt with extra state")
    t = rebuild_tensor(*args)
    return torch.nn.Parameter(t, t.requires_grad) if new_type is torch.nn.Parameter else t


def torch_size(items: Any) -> torch.Size:
    """``torch.Size`` of at most :data:`MAX_DIMS` non-negative integers."""
    return torch.Size(_int_tuple(items, "size"))


def torch_device(spec: Any, index: Any = None) -> torch.device:
    """``torch.device`` from its name (and index)."""
    if type(spec) is not str or len(spec) > 32 or not (index is None or type(index) is int):
        raise RefusedPickle(f"torch.device of {_short(spec)}")
    return torch.device(spec) if index is None else torch.device(spec, index)


# ---- the unpickler ------------------------------------------------------------------------------
_Py = pickle._Unpickler  # type: ignore[attr-defined]
_OP = {name: getattr(pickle, name)[0] for name in (
    "REDUCE", "NEWOBJ", "NEWOBJ_EX", "INST", "OBJ", "EXT1", "EXT2", "EXT4", "BUILD", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE",
    "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE", "PERSID", "BINPERSID")}


def _short(x: Any) -> str:
    r = repr(x) if isinstance(x, (str, int, float, bytes, type(None))) else type(x).__name__
    return r if len(r) <= 60 else r[:57] + "..."


class BoundedUnpickler(_Py):
    """The pure-Python unpickler with the guards of the module docstring.

    Subclasses fill :meth:`allowed` (``(module, name) -> object``), :attr:`callables` (the
    allowed objects ``REDUCE`` may call), :attr:`newobj_classes` and :attr:`build_types`.
    """

    callables: frozenset[int] = frozenset()  # ids of the callable allowed objects
    newobj_classes: tuple[type, ...] = ()
    build_types: tuple[type, ...] = ()

    def __init__(self, fh: Any) -> None:
        super().__init__(fh)
        self._tuple_depth: dict[int, tuple[int, tuple[Any, ...]]] = {}

    def allowed(self, module: str, name: str) -> Any:
        """The object a global names, or None to refuse it."""
        return None

    def find_class(self, module: str, name: str) -> Any:
        obj = self.allowed(module, name)
        if obj is None:
            raise RefusedPickle(f"refused to load the global {module}.{name}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("refused a persistent id")

    # -- calls ----------------------------------------------------------------------------------
    def _load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        if id(func) not in self.callables:
            raise RefusedPickle(f"refused to call {_callable_name(func)}")
        if type(args) is not tuple:
            raise RefusedPickle("call arguments that are not a tuple")
        stack[-1] = func(*args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if not (isinstance(cls, type) and cls in self.newobj_classes) or type(args) is not tuple or args:
            raise RefusedPickle(f"refused to create an instance of {_callable_name(cls)}")
        self.append(cls.__new__(cls))

    def _refuse_op(self) -> None:
        raise RefusedPickle("refused a protocol 0/1 instance, an extended NEWOBJ, an extension code or a persistent id")

    def _load_build(self) -> None:
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, type) or not isinstance(inst, self.build_types):
            raise RefusedPickle(f"refused to set the state of {_callable_name(inst)}")
        if getattr(inst, "__setstate__", None) is None and not (
                type(state) is dict and all(type(k) is str and not k.startswith("__") for k in state)):
            # no __setstate__: pickle would update __dict__ and setattr() a second dict
            raise RefusedPickle(f"refused attribute state for {_callable_name(inst)} other than plain names")
        _Py.load_build(self)

    # -- memo -----------------------------------------------------------------------------------
    def _check_memo(self, index: int) -> None:
        if index >= MAX_MEMO or len(self.memo) >= MAX_MEMO:
            raise RefusedPickle(f"a memo index of {index} (at most {MAX_MEMO} entries are read)")

    def _load_put(self) -> None:
        line = self.readline()[:-1]
        if len(line) > 12:
            raise RefusedPickle("a memo index of more than 12 digits")
        self._put(int(line))

    def _load_binput(self) -> None:
        self._put(self.read(1)[0])

    def _load_long_binput(self) -> None:
        self._put(int.from_bytes(self.read(4), "little"))

    def _load_memoize(self) -> None:
        self._put(len(self.memo))

    def _put(self, index: int) -> None:
        if index < 0:
            raise RefusedPickle("a negative memo index")
        self._check_memo(index)
        self.memo[index] = self.stack[-1]

    # -- nesting --------------------------------------------------------------------------------
    def _track_tuple(self) -> None:
        t = self.stack[-1]
        depth = 1 + max((self._tuple_depth.get(id(x), (0,))[0] for x in t if type(x) is tuple), default=0)
        if depth > MAX_DEPTH:
            raise RefusedPickle(f"tuples nested more than {MAX_DEPTH} deep")
        self._tuple_depth[id(t)] = (depth, t)  # the tuple is kept alive so its id stays its own

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(_Py.dispatch)


def _wrap_tuple_op(op: Callable[[Any], None]) -> Callable[[Any], None]:
    def load(self: BoundedUnpickler) -> None:
        op(self)
        self._track_tuple()

    return load


_d = BoundedUnpickler.dispatch
_d[_OP["REDUCE"]] = BoundedUnpickler._load_reduce
_d[_OP["NEWOBJ"]] = BoundedUnpickler._load_newobj
for _name in ("NEWOBJ_EX", "INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"):
    _d[_OP[_name]] = BoundedUnpickler._refuse_op
_d[_OP["BUILD"]] = BoundedUnpickler._load_build
_d[_OP["PUT"]] = BoundedUnpickler._load_put
_d[_OP["BINPUT"]] = BoundedUnpickler._load_binput
_d[_OP["LONG_BINPUT"]] = BoundedUnpickler._load_long_binput
_d[_OP["MEMOIZE"]] = BoundedUnpickler._load_memoize
for _name in ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
    _d[_OP[_name]] = _wrap_tuple_op(_Py.dispatch[_OP[_name]])
del _d, _name


class _StorageHeader(BoundedUnpickler):
    """Reads the pickles of a legacy ``torch.save`` of one storage without building anything:
    only storage classes resolve, nothing is called, and the ``("storage", type, key, location,
    numel, view)`` persistent ids are collected as byte counts."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(BoundedUnpickler.dispatch)
    dispatch[_OP["BINPERSID"]] = _Py.dispatch[_OP["BINPERSID"]]

    def __init__(self, fh: Any) -> None:
        super().__init__(fh)
        self.numels: list[int] = []

    def allowed(self, module: str, name: str) -> Any:
        cls = getattr(torch, name, None) if module == "torch" and name.endswith("Storage") else None
        return cls if isinstance(cls, type) and issubclass(cls, torch.storage.TypedStorage) else None

    def persistent_load(self, pid: Any) -> Any:
        if not (type(pid) is tuple and len(pid) == 6 and pid[0] == "storage" and type(pid[4]) is int and pid[4] >= 0
                and isinstance(pid[1], type) and issubclass(pid[1], torch.storage.TypedStorage)):
            raise RefusedPickle("a storage record that is not torch's")
        with warnings.catch_warnings():  # the legacy storage classes warn that they are deprecated
            warnings.simplefilter("ignore", UserWarning)
            dtype = pid[1].dtype
        self.numels.append(pid[4] * torch._utils._element_size(dtype))
        return None


def _callable_name(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{getattr(obj, '__module__', '') or ''}.{name}".lstrip(".")


# ---- the finished object ------------------------------------------------------------------------
def check_structure(obj: Any, children: Callable[[Any], Any], *, max_depth: int = MAX_DEPTH,
                    max_nodes: int = MAX_NODES) -> int:
    """Walk ``obj`` (``children(x)`` gives what ``x`` holds, or ``()`` for a leaf) without
    recursion; raise :class:`RefusedPickle` past ``max_depth`` levels or ``max_nodes`` visits
    (an object reached by two paths counts twice, a cycle until the bound). Returns the visits."""
    stack = [(obj, 1)]
    visited = 0
    while stack:
        x, depth = stack.pop()
        visited += 1
        if visited > max_nodes:
            raise RefusedPickle(f"more than {max_nodes} objects (shared parts counted once per path)")
        if depth > max_depth:
            raise RefusedPickle(f"objects nested more than {max_depth} deep")
        for child in children(x):
            stack.append((child, depth + 1))
            if len(stack) > max_nodes:
                raise RefusedPickle(f"more than {max_nodes} objects (shared parts counted once per path)")
    return visited


__all__ = [
    "MAX_DEPTH", "MAX_DIMS", "MAX_MEMO", "MAX_NODES", "NUMPY_DTYPES", "BoundedUnpickler", "NumpyDType", "RefusedPickle",
    "StorageBudget", "check_structure", "declared_storage_bytes", "numpy_dtype", "numpy_scalar", "rebuild_from_type",
    "rebuild_parameter", "rebuild_tensor", "torch_device", "torch_size",
]
