"""Private CNN inference with arithmetic garbled circuits (the Dash engine, in Rust).

Load a model (ONNX or the project's JSON format), then run it privately on
integer images: locally with both parties in this process (``infer``), or
with the evaluator as a ``Server`` and the garbler as a ``Client`` over the
project's protocol. Every output label is verified; a forged or corrupted
answer raises ``AuthenticityError``.
"""

from os import PathLike
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

class _Bar(Protocol):
    def update(self, n: int = ...) -> Any: ...

#: None, a callable ``progress(done, total)``, or a tqdm-like bar (``update(1)`` per image).
Progress = Union[None, Callable[[int, int], Any], _Bar]

class Error(Exception):
    """Base class of every error the dashgc module raises."""

class AuthenticityError(Error):
    """The evaluator's answer was forged or corrupted: nothing was decoded."""

class ProtocolError(Error):
    """Client and server failed to agree or to communicate."""

class ModelError(Error):
    """A model file cannot be read, imported, quantised or planned."""

    #: The ONNX node that failed (its name, or its first output's), or None.
    node: Optional[str]
    #: The failing node's operator (``op_type``), or None.
    op: Optional[str]

class Model:
    """A model ready for private inference (quantised, range-proved, planned)."""

    @staticmethod
    def load(
        path: Union[str, "PathLike[str]"],
        input_scale: Optional[float] = None,
        input_range: Optional[Tuple[int, int]] = None,
        *,
        tanh_as_sign: bool = False,
        activation_bits: int = 9,
        plan: bool = True,
    ) -> "Model":
        """Read an ONNX (``.onnx``) or JSON model file, quantise and plan it.

        ``input_scale``: float value of one integer input unit (ONNX default
        1/255); ``input_range``: smallest and largest integer input (ONNX
        default (0, 255)); a JSON model declares its own, which these
        override. ``plan`` (default) garbles the circuit planner's cheaper
        circuit (the same integers), as ``dashgc run`` does; ``plan=False``
        today's unplanned circuit (``dashgc run --no-plan``). Raises
        ModelError, FileNotFoundError or ValueError.
        """
    @property
    def name(self) -> str: ...
    @property
    def input_shape(self) -> List[int]:
        """Shape of one input, e.g. [1, 28, 28] or [784]."""
    @property
    def output_len(self) -> int:
        """Output values (classes) per input."""
    @property
    def input_range(self) -> Tuple[int, int]: ...
    @property
    def input_scale(self) -> float: ...
    @property
    def output_scale(self) -> float:
        """Integer output units per float unit (``logits = outputs / output_scale``)."""
    @property
    def base(self) -> List[int]:
        """The CRT primes."""
    @property
    def model_hash(self) -> str:
        """SHA-256 of the integer network (hex), agreed on by client and server."""
    def costs(self) -> Dict[str, Any]:
        """``ciphertexts``, ``bytes_per_image``, ``online_bytes_per_image``, ``base``, ``layer_ciphertexts``."""
    def eval_plain(self, images: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The quantised integer network in plaintext: (N, output_len) int64."""
    def eval_float(self, images: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The float model in plaintext: (N, output_len) float64."""

class InferenceResult:
    """A verified private inference of a batch."""

    #: (N,) int64 arg-max of each image's outputs.
    predictions: npt.NDArray[np.int64]
    #: (N, output_len) int64 decoded, verified integer outputs.
    outputs: npt.NDArray[np.int64]
    #: (N, output_len) float64 ``outputs / model.output_scale``.
    logits: npt.NDArray[np.float64]
    #: Seconds per phase: ``garble``, ``evaluate``, ``encode_decode``, ``total``
    #: (local) or ``offline``, ``online``, ``total`` (client).
    timings: Dict[str, float]
    #: ``material`` (garbled material) and ``online`` (labels) bytes, all images.
    bytes: Dict[str, int]
    #: Number of images.
    images: int
    def __len__(self) -> int: ...

def infer(model: Model, images: npt.ArrayLike, *, progress: Progress = None) -> InferenceResult:
    """Garble, evaluate, decode and verify ``images`` (N, *input_shape) integers, locally.

    Releases the GIL while each image runs. Raises ValueError for bad images,
    AuthenticityError for an output that fails verification.
    """

class Server:
    """The evaluator, serving ``model`` in a background thread (plain TCP; loopback or trusted networks)."""

    def __init__(
        self, model: Model, listen: str = "127.0.0.1:0", *, max_connections: int = 16, timeout: float = 60.0
    ) -> None: ...
    @property
    def address(self) -> str:
        """"host:port" bound."""
    @property
    def serving(self) -> bool: ...
    def stats(self) -> Dict[str, int]:
        """``connections``, ``circuits``, ``answers``, ``active``."""
    def close(self) -> None: ...
    def __enter__(self) -> "Server": ...
    def __exit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Client:
    """The garbler, connected to a server and agreed on ``model``."""

    def __init__(self, address: str, model: Model, *, timeout: float = 60.0, queue: int = 4) -> None: ...
    @property
    def address(self) -> str: ...
    def infer(self, images: npt.ArrayLike, *, progress: Progress = None) -> InferenceResult:
        """Private inference through the server; every answer verified.

        Raises AuthenticityError for a forged answer, ProtocolError otherwise;
        the client is closed after either.
        """
    def close(self) -> None: ...
    def __enter__(self) -> "Client": ...
    def __exit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
