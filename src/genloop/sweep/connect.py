"""Checks, before anything is written, that the services a run talks to can be reached.

``--executor ray --address ADDRESS`` and ``--track mlflow`` (``tracking.uri``) name servers;
a mistyped address or a server that is down must be a one-line error given before the
experiment folder exists, and never a hang: every probe here is a TCP connect bounded by
:data:`CONNECT_TIMEOUT_S` seconds. Nothing here writes.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from genloop.errors import ConfigError

if TYPE_CHECKING:
    from genloop.config import RunConfig

__all__ = ["CONNECT_TIMEOUT_S", "check_ray_address", "check_tracking", "parse_host_port"]

#: Seconds a probe waits for a server to accept a connection.
CONNECT_TIMEOUT_S = 5.0


def parse_host_port(text: str, *, what: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as ``(host, port)``; a :class:`ConfigError` otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, ""
    host = host.strip("[]")
    if not port_text and default_port is not None:
        port_text = str(default_port)
    if not host or any(c.isspace() or c in "/?#@" for c in host) or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT (e.g. 10.0.0.5:6379)")
    return host, int(port_text)


def probe(host: str, port: int, *, what: str) -> None:
    """Connect to ``host:port`` (at most :data:`CONNECT_TIMEOUT_S` s) and hang up; a refused,
    unreachable or unresolvable server is a :class:`ConfigError` naming it."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except socket.timeout:
        raise ConfigError(f"{what} {host}:{port} does not answer (no connection within {CONNECT_TIMEOUT_S:.0f} s)") from None
    except OSError as exc:
        raise ConfigError(f"{what} {host}:{port} cannot be reached: {exc.strerror or exc}") from None


def check_ray_address(address: str | None, executor: str) -> None:
    """``--address`` is for ``--executor ray``, and names a reachable cluster (``auto`` and
    ``local`` are Ray's own words: a running local cluster, a new local instance)."""
    if address is None:
        return
    if executor != "ray":
        raise ConfigError("--address is the Ray cluster of --executor ray; add --executor ray or drop --address")
    address = address.strip()
    if address in ("auto", "local"):
        if address == "auto" and not (os.environ.get("RAY_ADDRESS") or Path("/tmp/ray/ray_current_cluster").exists()):
            raise ConfigError("--address auto: no running Ray cluster found on this machine (start one with "
                              "`ray start --head`, or give HEAD:6379)")
        return
    if address.startswith("ray://"):
        host, port = parse_host_port(address[len("ray://"):], what="--address", default_port=10001)
    else:
        host, port = parse_host_port(address, what="--address")
    probe(host, port, what="the Ray cluster at --address")


def check_tracking(cfg: RunConfig, out: Path) -> None:
    """``tracking.uri`` of an experiment tracked with MLflow can be used: MLflow is installed,
    the URI names a store it knows, a file store's folder can be written, a server answers."""
    if cfg.tracking.backend != "mlflow":
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("--track mlflow needs MLflow: pip install mlflow-skinny (or mlflow)") from None
    uri = cfg.tracking.uri
    if uri is None:  # a file store under the experiment folder, whose writability is checked already
        return
    if not uri.strip():
        raise ConfigError("tracking.uri is empty; give an MLflow tracking URI (http://HOST:5000, file:///PATH) or leave it out")
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and uri[1:3] == ":\\"):  # a local path
        path = Path(parsed.path if scheme == "file" else uri)
        _check_store_folder(path, uri)
    elif scheme in ("http", "https"):
        if not parsed.hostname:
            raise ConfigError(f"tracking.uri {uri!r} names no host")
        try:
            port = parsed.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise ConfigError(f"tracking.uri {uri!r} has a bad port") from None
        probe(parsed.hostname, port, what="the MLflow tracking server of tracking.uri")
    elif scheme == "databricks":
        return
    else:
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=uri)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a store it cannot use
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"tracking.uri {uri!r} cannot be used by MLflow: {first}") from None


def _check_store_folder(path: Path, uri: str) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"tracking.uri {uri!r}: {path} is a file, not a folder")
    node = path
    while not node.exists() and node != node.parent:
        node = node.parent
    if not node.is_dir() or not os.access(node, os.W_OK | os.X_OK) or str(node.resolve()).startswith(("/proc", "/sys")):
        raise ConfigError(f"tracking.uri {uri!r}: the folder {path} cannot be created or written")
