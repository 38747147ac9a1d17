"""Build llama.cpp's ``llama-server`` from the sources vendored in a PyPI sdist.

No prebuilt binary is downloaded: the llama.cpp sources come from the
``llama-cpp-python`` sdist on the package registry (MIT), the build runs with
the machine's cmake and compiler, and the result is cached outside the clone,
keyed by the sdist version and the machine (CPU model and architecture), so
later runs on the same machine reuse it and a new machine rebuilds.

Run as ``openmaas engine build`` or ``python -m openmaas.engine.build``.
Only the standard library is used, so the build also runs before the
package's dependencies are installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from openmaas.engine.patches import PATCHES, patch

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SIMPLE_INDEX = "https://pypi.org/simple/llama-cpp-python/"
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    # ggml's own thread pool instead of OpenMP: OpenMP workers spin and collapse beside any other load
    # (decode 100 → 32 tokens/s with one busy core at 2 threads, 60 at 1), ggml's pool measured 118 idle
    # and 76 loaded at 1 thread, and it takes --poll and --prio (docs/benchmarks.md, thread policy).
    "-DGGML_OPENMP=OFF",
    # No AMX kernels even where the CPU has AMX: in VMs and containers the kernel often withholds the
    # AMX tile state (arch_prctl XCOMP_PERM), and ggml's AMX matmul then segfaults at the first decode
    # (seen on a Sapphire Rapids VM). Explicit -mno-* flags win over -march=native whatever their order.
    "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
    "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
)


def cache_root() -> Path:
    base = os.environ.get("OPENMAAS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "openmaas"
    )
    return Path(base)


def machine_key() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                cpu += line
    except OSError:
        pass
    digest = hashlib.sha256((platform.machine() + cpu + str(CMAKE_FLAGS) + str(PATCHES)).encode()).hexdigest()
    return f"{platform.machine()}-{digest[:12]}"


def binary_path(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    return cache_root() / "llama-server" / f"{version}-{machine_key()}" / "llama-server"


def _sdist_url(version: str) -> tuple[str, str | None]:
    request = urllib.request.Request(SIMPLE_INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        index = json.load(response)
    name = f"llama_cpp_python-{version}.tar.gz"
    for entry in index.get("files", []):
        if entry.get("filename") == name:
            return entry["url"], entry.get("hashes", {}).get("sha256")
    raise RuntimeError(f"{name} is not on the package index")


def fetch_sdist(version: str, dest: Path) -> Path:
    """Download the sdist from the registry (checked against the index's sha256)."""
    target = dest / f"llama_cpp_python-{version}.tar.gz"
    try:
        url, sha256 = _sdist_url(version)
        with urllib.request.urlopen(url, timeout=300) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out)
        if sha256 and hashlib.sha256(target.read_bytes()).hexdigest() != sha256:
            raise RuntimeError("sha256 mismatch for the llama-cpp-python sdist")
    except (OSError, RuntimeError, ValueError) as exc:  # fall back to pip's own resolver
        print(f"direct download failed ({exc}); using pip download", file=sys.stderr)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={version}",
                "-d",
                str(dest),
            ],
            check=True,
        )
    return target


def build(version: str = LLAMA_CPP_PYTHON_VERSION, jobs: int | None = None) -> Path:
    out = binary_path(version)
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openmaas-llama-") as tmp:
        work = Path(tmp)
        sdist = fetch_sdist(version, work)
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        src = work / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
        patch(src)
        build_dir = work / "build"
        subprocess.run(["cmake", "-S", str(src), "-B", str(build_dir), *CMAKE_FLAGS], check=True)
        subprocess.run(
            ["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 2)],
            check=True,
        )
        built = build_dir / "bin" / "llama-server"
        staging = out.with_suffix(".tmp")
        shutil.copy2(built, staging)
        staging.replace(out)  # atomic: a half-copied binary is never cached
    return out


def main() -> None:
    print(build())


if __name__ == "__main__":
    main()
